//! veil: keep secrets in git, value by value, in files sops can read.
//!
//! The data flows `bytes → store → tree → crypt → keys → document`:
//! a [`store`] parses a file into a [`tree`], [`crypt`] seals each selected value with
//! AES-256-GCM under a per-file data key and computes the MAC, [`keys`] wraps that data key for
//! every recipient, and [`document`] ties the steps together (encrypt, open, seal).

pub mod config;
pub mod crypt;
pub mod document;
pub mod keys;
pub mod metadata;
pub mod store;
pub mod stream;
pub mod tree;
