//! The fault suite: every built-in HTTP source, driven through a byte-level fault-injecting
//! token endpoint on loopback. See RELIABILITY.md for what each fault showed.

mod endpoint;
mod suite;
