"""The cloud providers' official Python SDKs fetch tokens from the test's emulated endpoints,
so that each emulator is checked by code this project did not write. Prints the token.

Usage:
  cloud_sdks.py gce-access            (GCE_METADATA_HOST names the server)
  cloud_sdks.py gce-id AUDIENCE
  cloud_sdks.py azure SCOPE [CLIENT_ID] (IDENTITY_ENDPOINT/IDENTITY_HEADER, or
                                       AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS)
"""
import sys


def main():
    kind = sys.argv[1]
    if kind.startswith("gce"):
        import google.auth.compute_engine
        import google.auth.transport.requests

        request = google.auth.transport.requests.Request()
        if kind == "gce-access":
            credentials = google.auth.compute_engine.Credentials()
        else:
            credentials = google.auth.compute_engine.IDTokenCredentials(
                request, target_audience=sys.argv[2], use_metadata_identity_endpoint=True
            )
        credentials.refresh(request)
        token = credentials.token
    elif kind == "azure":
        from azure.identity import ManagedIdentityCredential

        client_id = sys.argv[3] if len(sys.argv) > 3 else None
        credential = ManagedIdentityCredential(client_id=client_id)
        token = credential.get_token(sys.argv[2]).token
    else:
        raise SystemExit(f"unknown kind {kind}")
    sys.stdout.write(token)


main()
