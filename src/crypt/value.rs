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

use super::{push_wiped, DataKey};

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

/// Standard base64 symbols to their values, pre-shifted to each place of a group of four:
/// `DECODE[k][symbol]` is the value shifted left by `18 - 6 * k`, so a group's 24 bits are the
/// OR of four look-ups. Everything else (`=` included) is `BAD` in every place: no valid group
/// has a bit of its top byte set, so one test tells whether any symbol of any number of groups
/// ORed together was not base64.
const BAD: u32 = 0xFF00_0000;
static DECODE: [[u32; 256]; 4] = {
    let mut table = [[BAD; 256]; 4];
    let mut i = 0;
    while i < 64 {
        let symbol = ALPHABET[i] as usize;
        let mut place = 0;
        while place < 4 {
            table[place][symbol] = (i as u32) << (18 - 6 * place);
            place += 1;
        }
        i += 1;
    }
    table
};

/// A group of four symbols as its 24 bits (the top byte is not zero when a symbol is not base64).
#[inline(always)]
fn group(a: u8, b: u8, c: u8, d: u8) -> u32 {
    DECODE[0][usize::from(a)]
        | DECODE[1][usize::from(b)]
        | DECODE[2][usize::from(c)]
        | DECODE[3][usize::from(d)]
}

/// Two groups (eight symbols) as their six bytes, the first six of a big-endian `u64`, and the
/// OR of the two groups (to test for `BAD`). On a bad symbol the bytes are garbage. The symbols
/// are read through a reference, one byte load feeding each look-up (eight symbols copied by
/// value would be loaded as one word and taken apart with shifts, which costs more).
#[inline(always)]
fn block(s: &[u8; 8]) -> (u64, u32) {
    let n1 = group(s[0], s[1], s[2], s[3]);
    let n2 = group(s[4], s[5], s[6], s[7]);
    (u64::from(n1) << 40 | u64::from(n2) << 16, n1 | n2)
}

/// The last group of a text: its bytes (one, two or three, the rest zero) and how many there
/// are; `None` for anything `STANDARD` rejects there: a symbol that is not base64, padding
/// other than `xx==` or `xxx=`, or trailing bits (those below the last byte) that are not zero.
fn last_group(g: [u8; 4]) -> Option<([u8; 3], usize)> {
    let (n, len, trailing) = match g {
        [w, x, b'=', b'='] => (DECODE[0][w as usize] | DECODE[1][x as usize], 1, 0xFFFF),
        [w, x, y, b'='] => (
            DECODE[0][w as usize] | DECODE[1][x as usize] | DECODE[2][y as usize],
            2,
            0xFF,
        ),
        // A `=` elsewhere is `BAD` in `DECODE`.
        [w, x, y, z] => (group(w, x, y, z), 3, 0),
    };
    if n & (BAD | trailing) != 0 {
        return None;
    }
    let [_, a, b, c] = n.to_be_bytes();
    Some(([a, b, c], len))
}

/// The length `text` decodes to if it is base64: a multiple of four symbols, less one byte per
/// `=` at its end (at most two count; more is rejected when decoding). `None` when its length
/// is not a multiple of four.
fn decoded_len(text: &[u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let padding = match text {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    Some(text.len() / 4 * 3 - padding)
}

/// Decodes base64 `text` into `out`, which must be exactly [`decoded_len`] long; `None` for
/// anything base64's `STANDARD` engine rejects (padding required and canonical, no trailing
/// bits). Eight symbols are decoded per step and checked once, at the end, for a symbol that
/// was not base64: `out` holds garbage when the answer is `None`. Always inlined: the IV and
/// the tag have constant lengths, for which it unrolls.
#[inline(always)]
fn decode_to(text: &[u8], out: &mut [u8]) -> Option<()> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let Some(body_len) = text.len().checked_sub(4) else {
        return out.is_empty().then_some(());
    };
    let (body, last) = text.split_at(body_len);
    let (out_body, out_last) = out.split_at_mut_checked(body_len / 4 * 3)?;
    let mut bad = 0;
    let (blocks, rest) = body.as_chunks::<8>();
    let (out_blocks, out_rest) = out_body.as_chunks_mut::<6>();
    for (b, o) in blocks.iter().zip(out_blocks) {
        let (n, or) = block(b);
        bad |= or;
        o.copy_from_slice(&n.to_be_bytes()[..6]);
    }
    // The body is a whole number of groups: one group of four may be left, and three bytes
    // for it.
    if let (&[w, x, y, z], [a, b, c]) = (rest, out_rest) {
        let n = group(w, x, y, z);
        bad |= n;
        [_, *a, *b, *c] = n.to_be_bytes();
    }
    if bad & BAD != 0 {
        return None;
    }
    let ([a, b, c], len) = last_group(last.try_into().ok()?)?;
    // Written byte by byte: a copy of a length known only here would be a call to `memcpy`.
    match (out_last, len) {
        ([x], 1) => *x = a,
        ([x, y], 2) => [*x, *y] = [a, b],
        ([x, y, z], 3) => [*x, *y, *z] = [a, b, c],
        _ => return None,
    }
    Some(())
}

/// Decodes `len` bytes of base64 text at `buf[src..]` into `buf[dst..]`, `dst <= src`, and
/// returns the decoded length; `None` for anything base64's `STANDARD` engine rejects (padding
/// required and canonical, no trailing bits). Each block of eight symbols (or group of four) is
/// read before its bytes are written, and the bytes written never reach text not yet read, so
/// the output may overlap the input: the text can be decoded where it stands. As in
/// [`decode_to`], bad symbols are found once, at the end; the buffer then holds garbage.
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
    let mut bad = 0;
    while at + 8 <= last {
        let (n, or) = block(buf[at..at + 8].try_into().ok()?);
        bad |= or;
        // Eight bytes written, six meant: the last two land at most on this block's last two
        // symbols (`out <= at`), already read, and the next bytes written overwrite them.
        buf[out..out + 8].copy_from_slice(&n.to_be_bytes());
        out += 6;
        at += 8;
    }
    if at < last {
        // One group of four is left before the last: four bytes written, three meant, the
        // fourth at most on its last symbol, as above.
        let n = group(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
        bad |= n;
        buf[out..out + 4].copy_from_slice(&(n << 8).to_be_bytes());
        out += 3;
    }
    if bad & BAD != 0 {
        return None;
    }
    let mut symbols = [0u8; 4];
    symbols.copy_from_slice(&buf[last..last + 4]);
    let (bytes, n) = last_group(symbols)?;
    // All three written (zeros past the `n` meant), over the last group, already read: a
    // copy of `n` bytes would be a call to `memcpy`.
    buf[out..out + 3].copy_from_slice(&bytes);
    Some(out + n - dst)
}

/// Decodes a short field of exactly `N` bytes (an IV or a tag), from `T` symbols, on the stack.
fn decode_exact<const N: usize, const T: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != T || decoded_len(text)? != N {
        return None;
    }
    let mut out = [0u8; N];
    decode_to(text, &mut out)?;
    Some(out)
}

/// Decodes a data field into a buffer of exactly its decoded size (wiped on drop: it becomes
/// the plaintext when it is decrypted in place); `None` when it is not base64.
fn decode_field(field: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut data = Zeroizing::new(vec![0u8; decoded_len(field)?]);
    decode_to(field, &mut data)?;
    Some(data)
}

/// Where the fields of a common-case `ENC[…]` string stand, with its IV and tag decoded.
struct Header<'a> {
    /// The data field: `PREFIX.len()..data_end` of the text; not empty (it may hold a comma:
    /// see [`header`]).
    data_end: usize,
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
    type_name: &'a str,
}

/// The common case, read from the end: `…,iv:<44>,tag:<24>,type:<name>]` closing the text.
/// `None` sends anything else (and an IV or tag that does not decode) to the general path.
/// When the data then decodes too, the answer is the general path's: data, iv and tag are
/// base64, so they hold no `,` or `]`, and the type name holds no `]`, so the first `,iv:`,
/// `,tag:`, `,type:` and `]` are the ones found here. A data field with a comma must be left to
/// the general path (which then finds an earlier `,iv:` or none, and says so), but it is not
/// looked for here: a comma is not base64, so such a field never decodes, and the callers
/// decline it then (`parse_from_end` by failing; [`open_owned`] looks first, as decoding in
/// place spoils the text), sparing every well-formed value a scan of its data.
fn header(text: &str) -> Option<Header<'_>> {
    let body = text.strip_prefix(PREFIX)?.strip_suffix(']')?;
    let comma = body.rfind(',')?;
    let type_name = body[comma..].strip_prefix(",type:")?;
    if type_name.as_bytes().contains(&b']') {
        return None;
    }
    let rest = &body[..comma];
    let tag_at = rest.len().checked_sub(TAG_TEXT_LEN)?;
    let rest_tag = rest.get(..tag_at)?.strip_suffix(",tag:")?;
    let iv_at = rest_tag.len().checked_sub(IV_TEXT_LEN)?;
    let data = rest_tag.get(..iv_at)?.strip_suffix(",iv:")?;
    if data.is_empty() {
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
    let data = decode_field(&text.as_bytes()[PREFIX.len()..header.data_end])?;
    Some(Sealed {
        data,
        iv: header.iv,
        tag: header.tag,
        type_name: header.type_name,
    })
}

/// What [`open_owned`] (or [`open_borrowed`]) made of a text.
pub enum OpenedInPlace<Declined = String> {
    /// The text's own buffer (or, borrowed, a buffer of the data's size) now holds the
    /// plaintext.
    Opened {
        type_name: &'static str,
        iv: [u8; IV_LEN],
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// The value is malformed or does not authenticate; an owned text is gone (wiped).
    Failed(OpenError),
    /// Not the common case: for [`parse`] and [`open`], the text untouched (an owned one is
    /// handed back).
    Declined(Declined),
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

/// The common case located: where the data field ends, the IV and tag, and a known type.
fn common_case(text: &str) -> Option<(usize, [u8; IV_LEN], [u8; TAG_LEN], &'static str)> {
    header(text).and_then(|h| value_type(h.type_name).map(|name| (h.data_end, h.iv, h.tag, name)))
}

/// Decrypts decoded data in place: the last step of [`open_owned`] and [`open_borrowed`].
fn decrypt_data<D>(
    aead: &SopsGcm,
    mut buffer: Zeroizing<Vec<u8>>,
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
    type_name: &'static str,
    aad: &[u8],
) -> OpenedInPlace<D> {
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

/// [`parse`] and [`open`] without a copy: the data is decoded where it stands in the text's
/// buffer and decrypted there, and that buffer becomes the plaintext. The same answers as
/// `open(parse(text))` for every text it does not decline.
pub fn open_owned(aead: &SopsGcm, text: String, aad: &[u8]) -> OpenedInPlace {
    let Some((data_end, iv, tag, type_name)) = common_case(&text) else {
        return OpenedInPlace::Declined(text);
    };
    // A comma in the data is the general path's to report (see [`header`]); looked for before
    // decoding, which spoils the text.
    if text.as_bytes()[PREFIX.len()..data_end].contains(&b',') {
        return OpenedInPlace::Declined(text);
    }
    let mut buffer = Zeroizing::new(text.into_bytes());
    let Some(n) = decode_within(&mut buffer, PREFIX.len(), data_end - PREFIX.len(), 0) else {
        return OpenedInPlace::Failed(OpenError::Malformed("data is not base64"));
    };
    // The tail (the rest of the text: ciphertext, IV, tag, type) is not secret, and is wiped
    // with the rest of the capacity when the buffer is.
    buffer.truncate(n);
    decrypt_data(aead, buffer, iv, tag, type_name, aad)
}

/// [`open_owned`] for a text it may not take (one borrowed from the input): the data field is
/// decoded straight from the text into a buffer of exactly its decoded size, which is decrypted
/// in place and becomes the plaintext; the text is not copied. It declines, fails and opens
/// exactly as [`open_owned`] does, with the same answers (the two share every step but the
/// decoding, and both decoders give `STANDARD`'s answers).
pub fn open_borrowed(aead: &SopsGcm, text: &str, aad: &[u8]) -> OpenedInPlace<()> {
    let Some((data_end, iv, tag, type_name)) = common_case(text) else {
        return OpenedInPlace::Declined(());
    };
    let field = &text.as_bytes()[PREFIX.len()..data_end];
    let Some(buffer) = decode_field(field) else {
        // A comma in the data is the general path's to report (see [`header`]): looked for
        // only now, as a field with one never decodes.
        if field.contains(&b',') {
            return OpenedInPlace::Declined(());
        }
        return OpenedInPlace::Failed(OpenError::Malformed("data is not base64"));
    };
    decrypt_data(aead, buffer, iv, tag, type_name, aad)
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
    // Both sized up front, so that `seal_into` neither grows nor reserves: one allocation
    // each, as before it existed.
    let mut scratch = Zeroizing::new(Vec::with_capacity(plaintext.len()));
    let mut out = Vec::with_capacity(sealed_len(plaintext.len(), type_name));
    seal_into(aead, iv, plaintext, aad, type_name, &mut scratch, &mut out);
    String::from_utf8(out).expect("base64 and a type name are UTF-8")
}

/// [`seal`], appending the `ENC[…]` text to `out` (whatever it holds before is kept).
/// `scratch` is where the plaintext is copied and encrypted in place: reused from call to
/// call, it only grows, by moving to a larger zeroizing buffer (see [`push_wiped`]), so no copy
/// of a plaintext is ever freed unwiped. It holds ciphertext afterwards, never plaintext.
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
    push_wiped(scratch, plaintext);
    let tag = aead
        .encrypt_in_place_detached(GenericArray::from_slice(iv), aad, scratch.as_mut_slice())
        .expect("AES-GCM encryption cannot fail for inputs below 64 GiB");
    out.reserve(sealed_len(scratch.len(), type_name));
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

/// The length of the `ENC[…]` text of a plaintext of `len` bytes (the ciphertext is as long).
pub fn sealed_len(len: usize, type_name: &str) -> usize {
    let base64_len = |n: usize| n.div_ceil(3) * 4;
    PREFIX.len()
        + base64_len(len)
        + ",iv:".len()
        + base64_len(IV_LEN)
        + ",tag:".len()
        + base64_len(TAG_LEN)
        + ",type:".len()
        + type_name.len()
        + "]".len()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Every 12-bit value as its two base64 symbols, the first in the low byte: three bytes are
/// two look-ups, six bytes four.
static PAIRS: [u16; 4096] = {
    let mut table = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        table[i] = ALPHABET[i >> 6] as u16 | (ALPHABET[i & 63] as u16) << 8;
        i += 1;
    }
    table
};

/// The two symbols of the 12 bits of `n` at `shift`, first in the low byte.
#[inline(always)]
fn pair(n: u64, shift: u32) -> u64 {
    u64::from(PAIRS[(n >> shift) as usize & 0xFFF])
}

/// Appends `bytes` in standard, padded base64 (what `STANDARD.encode` gives): six bytes (eight
/// symbols, one `u64`) per step, then a group of three, then one or two bytes and padding.
/// Always inlined: the IV and the tag have constant lengths, for which it unrolls.
#[inline(always)]
fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, b'=');
    let text = &mut out[start..];
    let (blocks, tail) = bytes.as_chunks::<6>();
    let (text_blocks, text_tail) = text.split_at_mut(blocks.len() * 8);
    let (text_blocks, _) = text_blocks.as_chunks_mut::<8>();
    for (b, t) in blocks.iter().zip(text_blocks) {
        let n = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
        let symbols = pair(n, 36) | pair(n, 24) << 16 | pair(n, 12) << 32 | pair(n, 0) << 48;
        *t = symbols.to_le_bytes();
    }
    // Zero to five bytes left, in zero, four or eight symbols.
    let (tail, text_tail) = match (tail, text_tail) {
        ([a, b, c, tail @ ..], [t0, t1, t2, t3, text_tail @ ..]) => {
            let n = u64::from(*a) << 16 | u64::from(*b) << 8 | u64::from(*c);
            [*t0, *t1, *t2, *t3] = (pair(n, 12) as u32 | (pair(n, 0) as u32) << 16).to_le_bytes();
            (tail, text_tail)
        }
        other => other,
    };
    if let ([a, rest @ ..], [t0, t1, t2, ..]) = (tail, text_tail) {
        // One or two bytes: two or three symbols, then the padding already there.
        let n = u64::from(*a) << 16 | u64::from(rest.first().copied().unwrap_or(0)) << 8;
        [*t0, *t1] = (pair(n, 12) as u16).to_le_bytes();
        if !rest.is_empty() {
            *t2 = ALPHABET[(n >> 6) as usize & 63];
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
    use crate::crypt::LeafFailure;

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

    /// Both decoders (in place, behind a prefix too, and into a buffer of the decoded length)
    /// against `STANDARD` on one text.
    fn check_decoders(text: &[u8]) {
        let want = B64.decode(text).ok();
        let show = || format!("{:?}", String::from_utf8_lossy(text));
        let mut buf = text.to_vec();
        let ours = decode_within(&mut buf, 0, text.len(), 0).map(|n| buf[..n].to_vec());
        assert_eq!(ours, want, "in place: {}", show());
        // Where the text stands behind a prefix, as in an `ENC[…]` string.
        for prefix in [b"p".as_slice(), b"prefix", b"ENC[AES256_GCM,data:"] {
            let mut shifted = [prefix, text].concat();
            let ours = decode_within(&mut shifted, prefix.len(), text.len(), 0)
                .map(|n| shifted[..n].to_vec());
            assert_eq!(ours, want, "behind {prefix:?}: {}", show());
        }
        let ours = decode_field(text).map(|data| data.to_vec());
        assert_eq!(ours, want, "into its size: {}", show());
        // A buffer of another length is refused, whatever the text.
        if let Some(n) = decoded_len(text) {
            for len in [n.wrapping_sub(1), n + 1] {
                if len != usize::MAX {
                    assert_eq!(
                        decode_to(text, &mut vec![0; len]),
                        None,
                        "{len}: {}",
                        show()
                    );
                }
            }
        }
    }

    #[test]
    fn the_decoder_accepts_exactly_what_base64_standard_accepts() {
        // Every text of up to 6 symbols over an alphabet with edge cases, and of 7 or 8 over
        // a smaller one (kept small enough for debug builds).
        for (symbols, len) in (0..=6usize)
            .map(|len| (b"AQgw/+=,9".as_slice(), len))
            .chain([(b"Ag/=,".as_slice(), 7), (b"Ag/=,".as_slice(), 8)])
        {
            let mut digits = vec![0usize; len];
            loop {
                let text: Vec<u8> = digits.iter().map(|&d| symbols[d]).collect();
                check_decoders(&text);
                let Some(i) = digits.iter().rposition(|&d| d + 1 < symbols.len()) else {
                    break;
                };
                digits[i] += 1;
                digits[i + 1..].iter_mut().for_each(|d| *d = 0);
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Encodings of every length up to 50 bytes (every text length mod 8, so every place
        // in a block of eight and every padding), and each with every symbol in turn replaced
        // by a symbol that is not base64 (the padding symbol included), by another valid one,
        // and cut short or padded further.
        for len in 0..=50usize {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let text = B64.encode(&bytes).into_bytes();
            check_decoders(&text);
            for i in 0..text.len() {
                for bad in [
                    b'=', b',', b'-', b'_', b'.', b' ', b'\n', 0, 0x7F, 0x80, 0xFF, b'A', b'B',
                    b'/',
                ] {
                    let mut changed = text.clone();
                    changed[i] = bad;
                    check_decoders(&changed);
                }
            }
            for cut in 1..=3.min(text.len()) {
                check_decoders(&text[..text.len() - cut]);
            }
            for extra in [b"=".as_slice(), b"==", b"====", b"AAAA", b"AA==", b"A==="] {
                check_decoders(&[text.as_slice(), extra].concat());
            }
        }
        // Encodings of random lengths, and each with one byte changed.
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..next() % 80).map(|_| next() as u8).collect();
            let mut text = B64.encode(&bytes).into_bytes();
            check_decoders(&text);
            if !text.is_empty() {
                let i = (next() as usize) % text.len();
                text[i] = next() as u8;
                check_decoders(&text);
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
        // Every 12-bit value at every place of a step of six bytes and of the tail.
        for len in 1..=8usize {
            for value in 0..4096u32 {
                let mut bytes = vec![0u8; len];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = (value >> (i % 2 * 4)) as u8 ^ (i as u8).wrapping_mul(37);
                }
                let mut out = Vec::new();
                encode_into(&bytes, &mut out);
                assert_eq!(out, B64.encode(&bytes).into_bytes(), "{len} {value}");
            }
        }
    }

    #[test]
    fn seal_into_appends_what_seal_returns_and_reuses_its_scratch() {
        let key = DataKey::from_bytes(&[5; 32]).unwrap();
        let aead = cipher(&key);
        let mut scratch = Zeroizing::new(Vec::new());
        let mut out = b"before".to_vec();
        let mut expected = out.clone();
        for (n, len) in [0usize, 1, 2, 3, 40, 7, 300, 5].into_iter().enumerate() {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + n) as u8).collect();
            let iv = [n as u8; IV_LEN];
            let capacity = scratch.capacity();
            seal_into(
                &aead,
                &iv,
                &plaintext,
                b"a:b:",
                "bytes",
                &mut scratch,
                &mut out,
            );
            expected.extend_from_slice(seal(&aead, &iv, &plaintext, b"a:b:", "bytes").as_bytes());
            assert_eq!(out, expected, "{len}");
            // It grows only when it must, and never shrinks.
            assert!(scratch.capacity() >= capacity.max(len));
            if len <= capacity {
                assert_eq!(scratch.capacity(), capacity);
            }
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

    /// What one path made of a text, as plain data: `None` when it declined.
    type Made = Option<Result<(&'static str, [u8; IV_LEN], Vec<u8>), OpenError>>;

    fn made<D>(opened: OpenedInPlace<D>) -> Made {
        match opened {
            OpenedInPlace::Opened {
                type_name,
                iv,
                plaintext,
            } => Some(Ok((type_name, iv, plaintext.to_vec()))),
            OpenedInPlace::Failed(e) => Some(Err(e)),
            OpenedInPlace::Declined(_) => None,
        }
    }

    #[test]
    fn opening_a_borrowed_text_agrees_with_opening_an_owned_one() {
        use crate::crypt::{open_sealed, open_sealed_str};
        let key = DataKey::from_bytes(&[b'f'; 32]).unwrap();
        let aead = cipher(&key);
        let aad = b"a:b:".as_slice();
        // Valid values of every type, plaintexts that are not valid for their type, types
        // sops does not write, and an empty plaintext (empty data: the general path).
        let values: [(&str, &[u8]); 20] = [
            ("str", b"hello"),
            ("str", b""),
            ("str", b"\xff\xfe"),
            ("str", &[b'x'; 100]),
            ("int", b"-42"),
            ("int", b"4.5"),
            ("float", b"1.5e3"),
            ("float", b"Inf"),
            ("float", b"one"),
            ("bool", b"true"),
            ("bool", b"False"),
            ("bool", b"yes"),
            ("time", b"2024-02-03T04:05:06Z"),
            ("time", b"yesterday"),
            ("bytes", &[0, 1, 0xFF, 0x80]),
            ("bytes", b"ab"),
            ("comment", b"a comment"),
            ("strange", b"x"),
            ("s]r", b"x"),
            ("", b"x"),
        ];
        let mut texts = vec![SOPS_VECTOR.to_string()];
        for (n, (type_name, plaintext)) in values.iter().enumerate() {
            let text = seal(&aead, &[n as u8; IV_LEN], plaintext, aad, type_name);
            texts.push(text.clone());
            // Tampered: every symbol in turn replaced, the text cut at every length, and
            // text after the closing bracket.
            if n % 4 == 0 {
                for i in 0..text.len() {
                    for by in ['A', '=', ',', ']'] {
                        let mut changed = text.clone().into_bytes();
                        changed[i] = by as u8;
                        texts.push(String::from_utf8(changed).unwrap());
                    }
                }
                for end in 0..text.len() {
                    texts.push(text[..end].to_string());
                }
            }
            texts.push(format!("{text}x"));
            texts.push(text.replace(",iv:", ",iv:,"));
            texts.push(text.replace("data:", "data:=="));
        }
        let mut opened = 0;
        for text in &texts {
            for aad in [aad, b""] {
                let owned = match open_owned(&aead, text.clone(), aad) {
                    OpenedInPlace::Declined(back) => {
                        assert_eq!(&back, text);
                        None
                    }
                    other => made(other),
                };
                let borrowed = made(open_borrowed(&aead, text, aad));
                assert_eq!(borrowed, owned, "{text}");
                opened += usize::from(matches!(owned, Some(Ok(_))));
                // And as typed values, the general path included.
                let typed = |r: Result<crate::tree::Value, LeafFailure>| match r {
                    Ok(value) => Ok(value),
                    Err(failure) => Err(format!("{:?}", failure.at("p".into()))),
                };
                let (mut log_owned, mut log_borrowed) = (Vec::new(), Vec::new());
                let owned = typed(open_sealed(&aead, text.clone(), aad, |t, iv, p| {
                    log_owned.push((t.to_string(), *iv, p.to_vec()))
                }));
                let borrowed = typed(open_sealed_str(&aead, text, aad, |t, iv, p| {
                    log_borrowed.push((t.to_string(), *iv, p.to_vec()))
                }));
                assert!(owned == borrowed, "{text}: {owned:?} / {borrowed:?}");
                assert_eq!(log_owned, log_borrowed, "{text}");
            }
        }
        // The fast path did the work for the valid values of the types it knows.
        assert!(opened >= 15, "{opened}");
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
