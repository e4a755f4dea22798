//! One value sealed with AES-256-GCM and a 32-byte IV, and its wire form
//! `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` (spec §2).

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use super::DataKey;

/// sops' GCM: AES-256 with a 32-byte nonce (J0 derived by GHASH), 16-byte tag. Its key
/// schedule is wiped on drop (the `zeroize` feature of aes-gcm).
pub type SopsGcm = AesGcm<Aes256, U32>;

pub const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;
const PREFIX: &str = "ENC[AES256_GCM,data:";

/// The parts of an `ENC[…]` string.
pub struct Sealed<'a> {
    pub data: Vec<u8>,
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub type_name: &'a str,
}

/// Why an `ENC[…]` string could not be opened. Never carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("malformed encrypted value: {0}")]
    Malformed(&'static str),
    #[error(
        "authentication failed: wrong data key, or the value was edited or moved from another key"
    )]
    Authentication,
}

/// True when `text` looks like an sops encrypted value (it may still be malformed).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with("ENC[")
}

/// Splits an `ENC[…]` string. Like sops' pattern it is anchored at the start only, so text after
/// the closing bracket is tolerated.
pub fn parse(text: &str) -> Result<Sealed<'_>, OpenError> {
    let rest = text.strip_prefix(PREFIX).ok_or(OpenError::Malformed(
        "does not start with ENC[AES256_GCM,data:",
    ))?;
    let (data, rest) = rest
        .split_once(",iv:")
        .ok_or(OpenError::Malformed("no iv field"))?;
    let (iv, rest) = rest
        .split_once(",tag:")
        .ok_or(OpenError::Malformed("no tag field"))?;
    let (tag, rest) = rest
        .split_once(",type:")
        .ok_or(OpenError::Malformed("no type field"))?;
    let type_name = &rest[..rest
        .find(']')
        .ok_or(OpenError::Malformed("no closing bracket"))?];
    let decode = |field: &str, what| B64.decode(field).map_err(|_| OpenError::Malformed(what));
    let sealed = Sealed {
        data: decode(data, "data is not base64")?,
        iv: decode(iv, "iv is not base64")?,
        tag: decode(tag, "tag is not base64")?,
        type_name,
    };
    if sealed.data.is_empty() {
        return Err(OpenError::Malformed("empty data"));
    }
    if sealed.iv.len() != IV_LEN {
        return Err(OpenError::Malformed("iv is not 32 bytes"));
    }
    if sealed.tag.len() != TAG_LEN {
        return Err(OpenError::Malformed("tag is not 16 bytes"));
    }
    Ok(sealed)
}

/// The AEAD for a data key; build it once per file, not once per value.
pub fn cipher(key: &DataKey) -> SopsGcm {
    SopsGcm::new(GenericArray::from_slice(key.as_bytes()))
}

/// Seals `plaintext` under `aad` with the given IV and renders the `ENC[…]` string.
pub fn seal(
    aead: &SopsGcm,
    iv: &[u8; IV_LEN],
    plaintext: &[u8],
    aad: &[u8],
    type_name: &str,
) -> String {
    let mut buffer = Zeroizing::new(plaintext.to_vec());
    let tag = aead
        .encrypt_in_place_detached(GenericArray::from_slice(iv), aad, &mut buffer)
        .expect("AES-GCM encryption cannot fail for inputs below 64 GiB");
    let base64_len = |n: usize| n.div_ceil(3) * 4;
    let mut out = String::with_capacity(
        PREFIX.len() + base64_len(buffer.len()) + base64_len(IV_LEN) + base64_len(TAG_LEN) + 24,
    );
    out.push_str(PREFIX);
    B64.encode_string(&*buffer, &mut out);
    out.push_str(",iv:");
    B64.encode_string(iv, &mut out);
    out.push_str(",tag:");
    B64.encode_string(tag, &mut out);
    out.push_str(",type:");
    out.push_str(type_name);
    out.push(']');
    out
}

/// Opens a parsed value; returns the plaintext bytes.
pub fn open(
    aead: &SopsGcm,
    sealed: &Sealed<'_>,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let mut buffer = Zeroizing::new(sealed.data.clone());
    aead.decrypt_in_place_detached(
        GenericArray::from_slice(&sealed.iv),
        aad,
        &mut buffer,
        GenericArray::from_slice(&sealed.tag),
    )
    .map_err(|_| OpenError::Authentication)?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOPS_VECTOR: &str = "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]";

    #[test]
    fn opens_the_sops_known_answer_vector() {
        let key = DataKey::from_bytes(&[b'f'; 32]).unwrap();
        let sealed = parse(SOPS_VECTOR).unwrap();
        assert_eq!(&*open(&cipher(&key), &sealed, b"bar:").unwrap(), b"foo");
        assert_eq!(
            open(&cipher(&key), &sealed, b"").unwrap_err(),
            OpenError::Authentication
        );
    }

    #[test]
    fn seal_reproduces_the_vector() {
        let key = DataKey::from_bytes(&[b'f'; 32]).unwrap();
        let iv: [u8; 32] = parse(SOPS_VECTOR).unwrap().iv.try_into().unwrap();
        assert_eq!(
            seal(&cipher(&key), &iv, b"foo", b"bar:", "str"),
            SOPS_VECTOR
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            "ENC[AES256_GCM,data:,iv:AA==,tag:AA==,type:str]",
            "ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]",
            "ENC[AES256_GCM,data:oYyi,iv:AA==,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]",
            "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=",
            "ENC[CHACHA,data:oYyi]",
        ] {
            assert!(matches!(parse(bad), Err(OpenError::Malformed(_))), "{bad}");
        }
    }
}
