//! What the CLI reports when a command fails: a message, an optional hint, and sops' exit code.

use std::fmt;

/// sops' exit codes (`cmd/sops/codes/codes.go`), which scripts and integrations test for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Generic = 1,
    CouldNotReadInputFile = 2,
    CouldNotWriteOutputFile = 3,
    ErrorDumpingTree = 4,
    /// `--encryption-context` is not `key:value[,key:value…]` (AWS KMS, feature `aws`).
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    InvalidKmsEncryptionContextFormat = 6,
    InvalidSetFormat = 7,
    ConflictingParameters = 8,
    ErrorEncryptingTree = 23,
    ErrorDecryptingTree = 25,
    CannotChangeKeysFromNonExistentFile = 49,
    MacMismatch = 51,
    InvalidTreePathFormat = 91,
    NeedAtLeastOneDocument = 92,
    NoFileSpecified = 100,
    DuplicateDecryptionKeyType = 112,
    CouldNotRetrieveKey = 128,
    FileHasNotBeenModified = 200,
    NoEditorFound = 201,
    FileAlreadyEncrypted = 203,
}

pub struct Failure {
    pub code: Code,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: Code, message: impl fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;
