//! URI parsing (RFC 7512 examples, percent-encoding, bad URIs), PIN and module rules, envelope.

use super::*;

fn parse(text: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(text: &str) -> String {
    match Pkcs11Uri::parse(text) {
        Ok(uri) => panic!("{text} parsed as {uri:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn parses_rfc_7512_examples() {
    // RFC 7512 §3 (those that name an object).
    let uri = parse("pkcs11:object=my-pubkey;type=public");
    assert_eq!(uri.attr_text("object"), Some("my-pubkey"));
    assert_eq!(uri.object_type(), Some(ObjectType::Public));

    let uri = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
    assert_eq!(uri.object_type(), Some(ObjectType::Private));
    assert_eq!(uri.query_text("pin-source"), Some("file:/etc/token"));

    let uri = parse(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
    );
    assert_eq!(
        uri.attr_text("token"),
        Some("The Software PKCS#11 Softtoken")
    );
    assert_eq!(uri.attr_text("manufacturer"), Some("Snake Oil, Inc."));
    assert_eq!(
        uri.attr("id"),
        Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
    );
    assert_eq!(uri.attr_text("serial"), Some(""));

    let uri = parse(
        "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
    );
    assert_eq!(uri.attr_text("token"), Some("My token% created by Joe"));
    assert_eq!(
        uri.attr("id"),
        Some(&[1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6][..])
    );

    let uri = parse(
        "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
    );
    assert_eq!(uri.attr_text("token"), Some("A name with a substring %;"));

    let uri = parse("pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.;object=k?pin-value=the-pin");
    assert!(uri.has_pin_value());
    assert!(!uri.public().contains("pin-value"), "{}", uri.public());
    assert!(!format!("{uri:?}").contains("the-pin"));

    let uri = parse("pkcs11:slot-description=Sun%20Metaslot;object=k");
    assert_eq!(uri.attr_text("slot-description"), Some("Sun Metaslot"));

    let uri = parse("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token;library-version=1.23;object=k");
    assert_eq!(uri.attr_text("library-version"), Some("1.23"));

    let uri = parse("pkcs11:object=k?module-path=/mnt/libmypkcs11.so.1");
    assert_eq!(uri.query_text("module-path"), Some("/mnt/libmypkcs11.so.1"));

    // Vendor attributes in the query are kept and ignored; the scheme is case-insensitive.
    let uri = parse("PKCS11:object=k;type=secret-key?x-vendor=1");
    assert_eq!(uri.object_type(), Some(ObjectType::SecretKey));
    assert_eq!(uri.public(), "pkcs11:object=k;type=secret-key?x-vendor=1");
}

#[test]
fn public_form_drops_only_the_pin_value() {
    let uri = parse("pkcs11:token=t;object=o?pin-value=1234&module-path=/usr/lib/m.so");
    assert_eq!(
        uri.public(),
        "pkcs11:token=t;object=o?module-path=/usr/lib/m.so"
    );
    assert_eq!(
        parse("pkcs11:object=o?pin-value=1234").public(),
        "pkcs11:object=o"
    );
    // The same key however it is written.
    assert!(
        parse("pkcs11:token=t;object=o?pin-value=9").same_key(&parse("pkcs11:object=o;token=%74"))
    );
    assert!(!parse("pkcs11:token=t;object=o").same_key(&parse("pkcs11:token=t;object=p")));
}

#[test]
fn refuses_bad_uris() {
    for (text, why) in [
        ("object=k", "starts with"),
        ("pkcs11:", "must name the key"),
        ("pkcs11:token=t", "must name the key"),
        ("pkcs11:object=a;object=b", "twice"),
        ("pkcs11:object", "no '='"),
        ("pkcs11:object=k;colour=red", "unknown path attribute"),
        ("pkcs11:object=k?foo=bar", "unknown query attribute"),
        ("pkcs11:object=%4", "two hex digits"),
        ("pkcs11:object=%zz", "two hex digits"),
        ("pkcs11:object=a b", "percent-encoded"),
        ("pkcs11:object=%FF", "UTF-8"),
        ("pkcs11:object=k;type=secret", "not one of"),
        ("pkcs11:object=k;slot-id=x", "decimal"),
        ("pkcs11:object=k#frag", "fragment"),
        ("pkcs11:object=k?module-path=lib.so", "absolute"),
        ("pkcs11:object=k?module-name=softhsm2", "module-name"),
        ("pkcs11:object=k?pin-value=1&pin-source=file:/p", "not both"),
    ] {
        let message = refused(text);
        assert!(message.contains(why), "{text}: {message}");
    }
    // No message repeats a pin-value.
    let message = refused("pkcs11:object=k?pin-value=s3cr3t-pin&pin-source=file:/p");
    assert!(!message.contains("s3cr3t-pin"));
}

#[test]
fn splits_uri_lists_only_before_pkcs11() {
    assert_eq!(
        split_uris("pkcs11:object=a;manufacturer=Snake%20Oil,%20Inc., pkcs11:object=b ,"),
        [
            "pkcs11:object=a;manufacturer=Snake%20Oil,%20Inc.",
            "pkcs11:object=b"
        ]
    );
    assert!(split_uris(" , ").is_empty());
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn pin_sources_in_order_and_pin_value_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "from-file\n").unwrap();
    let settings = Settings::from_env(&env(&[("VEIL_PKCS11_PIN", "from-env")]));
    let pin = |s: &Settings, text: &str| s.pin(&parse(text)).map(|p| p.map(|p| p.to_string()));

    assert_eq!(
        pin(&settings, "pkcs11:object=k"),
        Ok(Some("from-env".into()))
    );
    let with_source = format!("pkcs11:object=k?pin-source=file:{}", pin_file.display());
    assert_eq!(pin(&settings, &with_source), Ok(Some("from-file".into())));
    let refused = pin(&settings, "pkcs11:object=k?pin-value=1234").unwrap_err();
    assert!(refused.contains("VEIL_PKCS11_ALLOW_PIN_VALUE"), "{refused}");
    assert!(!refused.contains("1234"));

    let allowed = Settings::from_env(&env(&[("VEIL_PKCS11_ALLOW_PIN_VALUE", "1")]));
    assert_eq!(
        pin(&allowed, "pkcs11:object=k?pin-value=12%334"),
        Ok(Some("1234".into()))
    );
    assert_eq!(pin(&allowed, "pkcs11:object=k"), Ok(None));

    let from_file = Settings::from_env(&env(&[(
        "VEIL_PKCS11_PIN_FILE",
        pin_file.to_str().unwrap(),
    )]));
    assert_eq!(
        pin(&from_file, "pkcs11:object=k"),
        Ok(Some("from-file".into()))
    );
    let missing = format!(
        "pkcs11:object=k?pin-source=file:{}/nope",
        dir.path().display()
    );
    assert!(pin(&settings, &missing)
        .unwrap_err()
        .contains("cannot read the PIN file"));

    // The recipient refuses a pin-value up front, naming the URI without it.
    let err = Pkcs11Recipient::parse_with_env("pkcs11:object=k?pin-value=99887766", env(&[]))
        .err()
        .unwrap();
    assert_eq!(err.name, "pkcs11:object=k");
    assert!(!err.to_string().contains("99887766"));
}

#[test]
fn modules_from_uris_must_be_trusted() {
    let settings = Settings::from_env(&env(&[]));
    assert_eq!(
        settings.module(&parse("pkcs11:object=k?module-path=/usr/lib/x/m.so")),
        Ok(PathBuf::from("/usr/lib/x/m.so"))
    );
    let err = settings
        .module(&parse("pkcs11:object=k?module-path=/tmp/evil.so"))
        .unwrap_err();
    assert!(err.contains("VEIL_PKCS11_MODULE"), "{err}");
    assert!(settings.module(&parse("pkcs11:object=k")).is_err());

    let with_env = Settings::from_env(&env(&[("VEIL_PKCS11_MODULE", "/tmp/evil.so")]));
    assert_eq!(
        with_env.module(&parse("pkcs11:object=k?module-path=/tmp/evil.so")),
        Ok(PathBuf::from("/tmp/evil.so"))
    );
    assert_eq!(
        with_env.module(&parse("pkcs11:object=k?module-path=/home/x/other.so")),
        Ok(PathBuf::from("/tmp/evil.so"))
    );
    assert_eq!(
        with_env.module(&parse("pkcs11:object=k")),
        Ok(PathBuf::from("/tmp/evil.so"))
    );
}

#[test]
fn envelope_round_trips_and_rejects_garbage() {
    let iv = [7u8; GCM_IV_LEN];
    let sealed = [9u8; 48];
    let gcm = Envelope::AesGcm {
        iv: &iv,
        sealed: &sealed,
    };
    let bytes = gcm.encode();
    assert_eq!(&bytes[..2], &[1, 1]);
    assert_eq!(Envelope::decode(&bytes), Ok(gcm));
    let rsa = Envelope::RsaOaep {
        sha256: false,
        ciphertext: &[3u8; 256],
    };
    assert_eq!(Envelope::decode(&rsa.encode()), Ok(rsa));

    assert!(Envelope::decode(&[]).is_err());
    assert!(Envelope::decode(&[2, 1, 0])
        .unwrap_err()
        .contains("version 2"));
    assert!(Envelope::decode(&[1, 9, 0])
        .unwrap_err()
        .contains("mechanism 9"));
    assert!(Envelope::decode(&bytes[..20])
        .unwrap_err()
        .contains("truncated"));
}

#[cfg(not(feature = "pkcs11"))]
#[test]
fn without_the_feature_keys_say_so() {
    let err = Pkcs11Recipient::parse_with_env("pkcs11:object=k", env(&[]))
        .err()
        .unwrap();
    assert!(err.reason.contains("built without pkcs11"), "{err}");
    let entry = KeyEntry::Pkcs11 {
        uri: "pkcs11:object=k".into(),
        created_at: "2024-01-01T00:00:00Z".into(),
        enc: "AQE=".into(),
    };
    let result = Pkcs11Identity::from_env(env(&[])).unwrap(&entry).unwrap();
    assert!(result
        .err()
        .unwrap()
        .reason
        .contains("built without pkcs11"));
}
