// GitHub's own toolkit (@actions/core) asks the runner's OIDC endpoint for an ID token, so
// the test's emulated runner is checked by code this project did not write. Reads
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN; prints the token.
// Usage: node github_oidc.mjs AUDIENCE
import * as core from '@actions/core';

const token = await core.getIDToken(process.argv[2]);
// The toolkit also prints `::add-mask::` workflow commands: the token gets a line of its own.
process.stdout.write(`\ntoken=${token}\n`);
