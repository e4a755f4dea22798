//! `.sops.yaml`: discovery and creation rules.
