//! PGP through the `gpg` binary, as sops does.
