//! The pipeline: encrypt a plain document, open an encrypted one, seal it again.
