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

/// The parts of an `ENC[…]` string, decoded.
pub struct Sealed<'a> {
    /// The ciphertext. [`open`] decrypts it in place, so the buffer that holds it becomes the
    /// plaintext: it is wiped on drop from the start.
    pub data: Zeroizing<Vec<u8>>,
    pub iv: [u8; IV_LEN],
    pub tag: [u8; TAG_LEN],
    pub type_name: &'a str,
}

/// The fields of an `ENC[…]` string, located but not decoded.
struct Fields<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    type_name: &'a str,
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

/// Splits `rest` at the first occurrence of `label` (which starts with a comma), as
/// `split_once` would. Base64 has no commas, so in a well-formed value the first comma starts
/// the label and one byte search finds it; anything else takes the general search.
fn split_at_label<'a>(rest: &'a str, label: &str) -> Option<(&'a str, &'a str)> {
    debug_assert!(label.starts_with(','));
    let comma = rest.find(',')?;
    match rest[comma..].strip_prefix(label) {
        Some(after) => Some((&rest[..comma], after)),
        None => rest[comma + 1..]
            .split_once(label)
            .map(|(before, after)| (&rest[..comma + 1 + before.len()], after)),
    }
}

/// Locates the fields of an `ENC[…]` string without decoding them.
fn locate(text: &str) -> Result<Fields<'_>, OpenError> {
    let rest = text.strip_prefix(PREFIX).ok_or(OpenError::Malformed(
        "does not start with ENC[AES256_GCM,data:",
    ))?;
    let (data, rest) = split_at_label(rest, ",iv:").ok_or(OpenError::Malformed("no iv field"))?;
    let (iv, rest) = split_at_label(rest, ",tag:").ok_or(OpenError::Malformed("no tag field"))?;
    let (tag, rest) =
        split_at_label(rest, ",type:").ok_or(OpenError::Malformed("no type field"))?;
    let type_name = &rest[..rest
        .find(']')
        .ok_or(OpenError::Malformed("no closing bracket"))?];
    Ok(Fields {
        data,
        iv,
        tag,
        type_name,
    })
}

/// The type name of an `ENC[…]` string whose fields can be located; nothing is decoded.
pub fn type_name_of(text: &str) -> Option<&str> {
    locate(text).ok().map(|f| f.type_name)
}

/// A short base64 field decoded on the stack: the bytes and how many there are. Fields of up to
/// 64 characters (48 bytes) decode into the buffer; a longer one is decoded on the heap only to
/// tell "not base64" from "wrong length", and reports a length no caller accepts.
fn decode_short(field: &str, what: &'static str) -> Result<([u8; 48], usize), OpenError> {
    let mut buffer = [0u8; 48];
    if field.len() <= 64 {
        let n = B64
            .decode_slice(field, &mut buffer)
            .map_err(|_| OpenError::Malformed(what))?;
        Ok((buffer, n))
    } else {
        let n = B64
            .decode(field)
            .map_err(|_| OpenError::Malformed(what))?
            .len();
        Ok((buffer, n))
    }
}

/// The length of the base64 text of an IV and of a tag (padded, as every valid one is).
const IV_TEXT_LEN: usize = IV_LEN.div_ceil(3) * 4;
const TAG_TEXT_LEN: usize = TAG_LEN.div_ceil(3) * 4;

/// Standard base64 symbols to their values; everything else (`=` included) is `INVALID`.
const INVALID: u8 = 0xFF;
static SYMBOLS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes `len` bytes of base64 text at `buf[src..]` into `buf[dst..]`, `dst <= src`, and
/// returns the decoded length; `None` for anything base64's `STANDARD` engine rejects (padding
/// required and canonical, no trailing bits). Each group of four is read before its three bytes
/// are written, and the bytes written never reach text not yet read, so the output may overlap
/// the input: the text can be decoded where it stands.
fn decode_within(buf: &mut [u8], src: usize, len: usize, dst: usize) -> Option<usize> {
    debug_assert!(dst <= src && src + len <= buf.len());
    if !len.is_multiple_of(4) {
        return None;
    }
    if len == 0 {
        return Some(0);
    }
    let mut out = dst;
    let last = src + len - 4;
    let mut at = src;
    while at < last {
        let group: [u8; 4] = buf[at..at + 4].try_into().expect("four bytes");
        let [a, b, c, d] = group.map(|symbol| SYMBOLS[symbol as usize]);
        // Symbols are below 64; `INVALID` has the top bits set.
        if (a | b | c | d) & 0xC0 != 0 {
            return None;
        }
        let n = (a as u32) << 26 | (b as u32) << 20 | (c as u32) << 14 | (d as u32) << 8;
        // Four bytes written, three meant: the fourth lands at most on this group's last
        // symbol, already read, and the next group's bytes overwrite it.
        buf[out..out + 4].copy_from_slice(&n.to_be_bytes());
        out += 3;
        at += 4;
    }
    let at = last;
    let [w, x, y, z] = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    let (a, b) = (SYMBOLS[w as usize], SYMBOLS[x as usize]);
    if (a | b) & 0xC0 != 0 {
        return None;
    }
    match (y, z) {
        (b'=', b'=') => {
            if b & 0x0F != 0 {
                return None;
            }
            buf[out] = a << 2 | b >> 4;
            out += 1;
        }
        (_, b'=') => {
            let c = SYMBOLS[y as usize];
            if c & 0xC0 != 0 || c & 0x03 != 0 {
                return None;
            }
            buf[out] = a << 2 | b >> 4;
            buf[out + 1] = b << 4 | c >> 2;
            out += 2;
        }
        _ => {
            let (c, d) = (SYMBOLS[y as usize], SYMBOLS[z as usize]);
            if (c | d) & 0xC0 != 0 {
                return None;
            }
            let n = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
            buf[out..out + 3].copy_from_slice(&n.to_be_bytes()[1..]);
            out += 3;
        }
    }
    Some(out - dst)
}

/// Decodes a short field of exactly `N` bytes (an IV or a tag) on the stack.
fn decode_exact<const N: usize, const T: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != T {
        return None;
    }
    let mut buf = [0u8; T];
    buf.copy_from_slice(text.as_bytes());
    if decode_within(&mut buf, 0, T, 0)? != N {
        return None;
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    Some(out)
}

/// Where the fields of a common-case `ENC[…]` string stand, with its IV and tag decoded.
struct Header<'a> {
    /// The data field: `PREFIX.len()..data_end` of the text; not empty, no comma.
    data_end: usize,
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
    type_name: &'a str,
}

/// The common case, read from the end: `…,iv:<44>,tag:<24>,type:<name>]` closing the text.
/// `None` sends anything else (and an IV or tag that does not decode) to the general path.
/// When the data then decodes too, the answer is the general path's: data, iv and tag are
/// base64, so they hold no `,` or `]`, and the type name holds no `]`, so the first `,iv:`,
/// `,tag:`, `,type:` and `]` are the ones found here. A data field with a comma is left to the
/// general path, so that a failure to decode it is "data is not base64" there too.
fn header(text: &str) -> Option<Header<'_>> {
    let body = text.strip_prefix(PREFIX)?.strip_suffix(']')?;
    let comma = body.rfind(',')?;
    let type_name = body[comma..].strip_prefix(",type:")?;
    if type_name.contains(']') {
        return None;
    }
    let rest = &body[..comma];
    let tag_at = rest.len().checked_sub(TAG_TEXT_LEN)?;
    let rest_tag = rest.get(..tag_at)?.strip_suffix(",tag:")?;
    let iv_at = rest_tag.len().checked_sub(IV_TEXT_LEN)?;
    let data = rest_tag.get(..iv_at)?.strip_suffix(",iv:")?;
    if data.is_empty() || data.contains(',') {
        return None;
    }
    Some(Header {
        data_end: PREFIX.len() + data.len(),
        iv: decode_exact::<IV_LEN, IV_TEXT_LEN>(&rest_tag[iv_at..])?,
        tag: decode_exact::<TAG_LEN, TAG_TEXT_LEN>(&rest[tag_at..])?,
        type_name,
    })
}

fn parse_from_end(text: &str) -> Option<Sealed<'_>> {
    let header = header(text)?;
    let field = &text.as_bytes()[PREFIX.len()..header.data_end];
    let mut data = Zeroizing::new(field.to_vec());
    let n = decode_within(&mut data, 0, field.len(), 0)?;
    data.truncate(n);
    Some(Sealed {
        data,
        iv: header.iv,
        tag: header.tag,
        type_name: header.type_name,
    })
}

/// What [`open_owned`] made of a text.
pub enum OpenedInPlace {
    /// The text's own buffer now holds the plaintext.
    Opened {
        type_name: &'static str,
        iv: [u8; IV_LEN],
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// The value is malformed or does not authenticate; the text is gone (wiped).
    Failed(OpenError),
    /// Not the common case: the text, untouched, for [`parse`] and [`open`].
    Declined(String),
}

/// Opens the common case of a value's type as a `'static` name, so that nothing borrows the
/// text whose buffer is reused; others (errors, in the end) take the general path.
fn value_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "str" => "str",
        "int" => "int",
        "float" => "float",
        "bool" => "bool",
        "time" => "time",
        "bytes" => "bytes",
        _ => return None,
    })
}

/// [`parse`] and [`open`] without a copy: the data is decoded where it stands in the text's
/// buffer and decrypted there, and that buffer becomes the plaintext. The same answers as
/// `open(parse(text))` for every text it does not decline.
pub fn open_owned(aead: &SopsGcm, text: String, aad: &[u8]) -> OpenedInPlace {
    let Some((data_end, iv, tag, type_name)) = header(&text)
        .and_then(|h| value_type(h.type_name).map(|name| (h.data_end, h.iv, h.tag, name)))
    else {
        return OpenedInPlace::Declined(text);
    };
    let mut buffer = Zeroizing::new(text.into_bytes());
    let Some(n) = decode_within(&mut buffer, PREFIX.len(), data_end - PREFIX.len(), 0) else {
        return OpenedInPlace::Failed(OpenError::Malformed("data is not base64"));
    };
    // The tail (the rest of the text: ciphertext, IV, tag, type) is not secret, and is wiped
    // with the rest of the capacity when the buffer is.
    buffer.truncate(n);
    if aead
        .decrypt_in_place_detached(
            GenericArray::from_slice(&iv),
            aad,
            &mut buffer,
            GenericArray::from_slice(&tag),
        )
        .is_err()
    {
        return OpenedInPlace::Failed(OpenError::Authentication);
    }
    OpenedInPlace::Opened {
        type_name,
        iv,
        plaintext: buffer,
    }
}

/// Decodes the data field into a buffer of exactly its decoded size (at most two bytes over),
/// so no reallocation follows; it is decrypted in place later.
fn decode_data(field: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let mut data = Zeroizing::new(Vec::with_capacity(field.len() / 4 * 3 + 3));
    B64.decode_vec(field, &mut data)
        .map_err(|_| OpenError::Malformed("data is not base64"))?;
    Ok(data)
}

/// Splits and decodes an `ENC[…]` string. Like sops' pattern it is anchored at the start only,
/// so text after the closing bracket is tolerated.
pub fn parse(text: &str) -> Result<Sealed<'_>, OpenError> {
    match parse_from_end(text) {
        Some(sealed) => Ok(sealed),
        None => parse_fields(text),
    }
}

/// The general path: fields located from the start, as sops' pattern reads them.
fn parse_fields(text: &str) -> Result<Sealed<'_>, OpenError> {
    let fields = locate(text)?;
    let data = decode_data(fields.data)?;
    let (iv, iv_len) = decode_short(fields.iv, "iv is not base64")?;
    let (tag, tag_len) = decode_short(fields.tag, "tag is not base64")?;
    if data.is_empty() {
        return Err(OpenError::Malformed("empty data"));
    }
    if iv_len != IV_LEN {
        return Err(OpenError::Malformed("iv is not 32 bytes"));
    }
    if tag_len != TAG_LEN {
        return Err(OpenError::Malformed("tag is not 16 bytes"));
    }
    Ok(Sealed {
        data,
        iv: iv[..IV_LEN].try_into().expect("length checked"),
        tag: tag[..TAG_LEN].try_into().expect("length checked"),
        type_name: fields.type_name,
    })
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
    let mut out = Vec::new();
    seal_into(
        aead,
        iv,
        plaintext,
        aad,
        type_name,
        &mut Zeroizing::new(Vec::new()),
        &mut out,
    );
    String::from_utf8(out).expect("base64 and a type name are UTF-8")
}

/// [`seal`], appending the `ENC[…]` text to `out`; the plaintext is encrypted in `scratch`,
/// a buffer reused from value to value (it only grows by moving, wiped, to a larger one).
pub fn seal_into(
    aead: &SopsGcm,
    iv: &[u8; IV_LEN],
    plaintext: &[u8],
    aad: &[u8],
    type_name: &str,
    scratch: &mut Zeroizing<Vec<u8>>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    super::push_wiped(scratch, plaintext);
    let tag = aead
        .encrypt_in_place_detached(GenericArray::from_slice(iv), aad, scratch.as_mut_slice())
        .expect("AES-GCM encryption cannot fail for inputs below 64 GiB");
    let base64_len = |n: usize| n.div_ceil(3) * 4;
    out.reserve(
        PREFIX.len()
            + base64_len(scratch.len())
            + base64_len(IV_LEN)
            + base64_len(TAG_LEN)
            + 16
            + type_name.len(),
    );
    out.extend_from_slice(PREFIX.as_bytes());
    encode_into(scratch, out);
    out.extend_from_slice(b",iv:");
    encode_into(iv, out);
    out.extend_from_slice(b",tag:");
    encode_into(&tag, out);
    out.extend_from_slice(b",type:");
    out.extend_from_slice(type_name.as_bytes());
    out.push(b']');
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends `bytes` in standard, padded base64 (what `STANDARD.encode` gives).
fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, b'=');
    let text = &mut out[start..];
    let chunks = bytes.chunks_exact(3);
    let tail = chunks.remainder();
    let mut groups = text.chunks_exact_mut(4);
    for (chunk, group) in chunks.zip(&mut groups) {
        let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
        group.copy_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    if let Some(group) = groups.next() {
        // One or two bytes left: two or three symbols, then the padding already there.
        let n = (tail[0] as u32) << 16 | (*tail.get(1).unwrap_or(&0) as u32) << 8;
        group[0] = ALPHABET[(n >> 18) as usize & 63];
        group[1] = ALPHABET[(n >> 12) as usize & 63];
        if tail.len() == 2 {
            group[2] = ALPHABET[(n >> 6) as usize & 63];
        }
    }
}

/// Opens a parsed value: decrypts its data in place and returns that buffer as the plaintext.
pub fn open(
    aead: &SopsGcm,
    sealed: Sealed<'_>,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let mut buffer = sealed.data;
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
        assert_eq!(&*open(&cipher(&key), sealed, b"bar:").unwrap(), b"foo");
        assert_eq!(
            open(&cipher(&key), parse(SOPS_VECTOR).unwrap(), b"").unwrap_err(),
            OpenError::Authentication
        );
    }

    #[test]
    fn seal_reproduces_the_vector() {
        let key = DataKey::from_bytes(&[b'f'; 32]).unwrap();
        let iv: [u8; 32] = parse(SOPS_VECTOR).unwrap().iv;
        assert_eq!(
            seal(&cipher(&key), &iv, b"foo", b"bar:", "str"),
            SOPS_VECTOR
        );
    }

    /// The answer as plain data, to compare the two paths.
    type Summary = Result<(Vec<u8>, [u8; 32], [u8; 16], String), OpenError>;

    fn summary(r: Result<Sealed<'_>, OpenError>) -> Summary {
        r.map(|s| (s.data.to_vec(), s.iv, s.tag, s.type_name.to_string()))
    }

    #[test]
    fn the_fast_path_reads_sops_output_and_agrees_with_the_general_one() {
        assert!(parse_from_end(SOPS_VECTOR).is_some());
        let key = DataKey::from_bytes(&[7; 32]).unwrap();
        for len in [1usize, 2, 3, 4, 5, 31, 32, 33, 100] {
            let text = seal(&cipher(&key), &[9; 32], &vec![b'x'; len], b"a:", "str");
            assert!(parse_from_end(&text).is_some(), "{text}");
            assert_eq!(summary(parse(&text)), summary(parse_fields(&text)));
        }
        let iv = "MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=";
        let tag = "t5z2Z023Up0kxwCgw1gNxg==";
        let odd = [
            format!("{SOPS_VECTOR}trailing"),
            format!("{SOPS_VECTOR}]"),
            SOPS_VECTOR.replace("type:str", "type:s]tr"),
            SOPS_VECTOR.replace("type:str", "type:"),
            SOPS_VECTOR.replace("type:str", "type:a,type:b"),
            SOPS_VECTOR.replace("oYyi", "oY,iv:yi"),
            SOPS_VECTOR.replace("oYyi", "oYy="),
            SOPS_VECTOR.replace("oYyi", "oYy"),
            SOPS_VECTOR.replace("oYyi", ""),
            SOPS_VECTOR.replace(iv, &format!("{iv},tag:{tag}")),
            SOPS_VECTOR.replace(iv, &iv[1..]),
            SOPS_VECTOR.replace(iv, &format!("A{}", &iv[1..])),
            SOPS_VECTOR.replace(iv, &iv.replace('M', ",")),
            SOPS_VECTOR.replace(iv, "AAAA"),
            SOPS_VECTOR.replace(tag, &tag.replace("==", "=A")),
            SOPS_VECTOR.replace(tag, &format!("{tag},type:int")),
            SOPS_VECTOR.replace(
                tag,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            SOPS_VECTOR.replace(",tag:", ",tag:,"),
            SOPS_VECTOR.replace("AES256_GCM", "AES256_GCN"),
        ];
        for text in &odd {
            assert_eq!(summary(parse(text)), summary(parse_fields(text)), "{text}");
        }
    }

    #[test]
    fn the_decoder_accepts_exactly_what_base64_standard_accepts() {
        let check = |text: &[u8]| {
            let mut buf = text.to_vec();
            let ours = decode_within(&mut buf, 0, text.len(), 0).map(|n| buf[..n].to_vec());
            assert_eq!(
                ours,
                B64.decode(text).ok(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
            // Where the text stands behind a prefix, as in an `ENC[…]` string.
            let mut shifted = [b"prefix".as_slice(), text].concat();
            let ours = decode_within(&mut shifted, 6, text.len(), 0).map(|n| shifted[..n].to_vec());
            assert_eq!(ours, B64.decode(text).ok());
        };
        // Every text of up to 6 symbols over an alphabet with edge cases, and of 7 or 8 over
        // a smaller one (kept small enough for debug builds).
        for (symbols, len) in (0..=6usize)
            .map(|len| (b"AQgw/+=,9".as_slice(), len))
            .chain([(b"Ag/=,".as_slice(), 7), (b"Ag/=,".as_slice(), 8)])
        {
            let mut digits = vec![0usize; len];
            loop {
                let text: Vec<u8> = digits.iter().map(|&d| symbols[d]).collect();
                check(&text);
                let Some(i) = digits.iter().rposition(|&d| d + 1 < symbols.len()) else {
                    break;
                };
                digits[i] += 1;
                digits[i + 1..].iter_mut().for_each(|d| *d = 0);
            }
        }
        // Encodings of random lengths, and each with one byte changed.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..next() % 80).map(|_| next() as u8).collect();
            let mut text = B64.encode(&bytes).into_bytes();
            check(&text);
            if !text.is_empty() {
                let i = (next() as usize) % text.len();
                text[i] = next() as u8;
                check(&text);
            }
        }
    }

    #[test]
    fn the_encoder_writes_what_base64_standard_writes() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in (0..100).chain([255, 256, 1000]) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state >> (i % 57)) as u8 ^ i as u8)
                .collect();
            let mut out = b"x".to_vec();
            encode_into(&bytes, &mut out);
            assert_eq!(out[1..], *B64.encode(&bytes).as_bytes(), "{len}");
        }
    }

    #[test]
    fn opening_in_place_agrees_with_parse_and_open() {
        let key = DataKey::from_bytes(&[b'f'; 32]).unwrap();
        let aead = cipher(&key);
        let general = |text: &str, aad: &[u8]| {
            parse(text).and_then(|s| {
                let type_name = s.type_name.to_string();
                open(&aead, s, aad).map(|p| (type_name, p.to_vec()))
            })
        };
        let iv = "MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=";
        let mut texts = vec![
            SOPS_VECTOR.to_string(),
            SOPS_VECTOR.replace("type:str", "type:int"),
            SOPS_VECTOR.replace("type:str", "type:comment"),
            SOPS_VECTOR.replace("oYyi", "oYyj"),
            SOPS_VECTOR.replace("oYyi", "oY=i"),
            SOPS_VECTOR.replace("oYyi", "oY,i"),
            SOPS_VECTOR.replace(iv, &iv.replace('M', "N")),
            format!("{SOPS_VECTOR}x"),
        ];
        for len in [1usize, 2, 3, 50] {
            texts.push(seal(&aead, &[3; 32], &vec![b'y'; len], b"bar:", "bytes"));
        }
        for text in &texts {
            for aad in [b"bar:".as_slice(), b""] {
                let ours = match open_owned(&aead, text.clone(), aad) {
                    OpenedInPlace::Opened {
                        type_name,
                        plaintext,
                        ..
                    } => Ok((type_name.to_string(), plaintext.to_vec())),
                    OpenedInPlace::Failed(e) => Err(e),
                    OpenedInPlace::Declined(back) => {
                        assert_eq!(&back, text);
                        continue;
                    }
                };
                assert_eq!(ours, general(text, aad), "{text}");
            }
        }
        assert!(matches!(
            open_owned(&aead, SOPS_VECTOR.to_string(), b"bar:"),
            OpenedInPlace::Opened {
                type_name: "str",
                ..
            }
        ));
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
