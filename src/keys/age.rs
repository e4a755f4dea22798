//! age recipients and identities (X25519, SSH, plugins), stored as armored age files.
