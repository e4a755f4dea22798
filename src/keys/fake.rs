//! A stand-in key for tests of the pipeline: it "wraps" the data key by hex-encoding it into an
//! age entry and unwraps such entries, so encrypt/open run end to end without a real key source.

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

pub(crate) struct Plain;

impl Recipient for Plain {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let enc = part.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        Ok(KeyEntry::Age {
            recipient: "age1plain".into(),
            enc,
        })
    }

    fn name(&self) -> String {
        "age1plain".into()
    }
}

impl Identity for Plain {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let KeyEntry::Age { enc, .. } = entry else {
            return None;
        };
        let bytes = (0..enc.len() / 2)
            .map(|i| u8::from_str_radix(enc.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
            .collect();
        Some(Ok(KeyPart::new(bytes)))
    }
}
