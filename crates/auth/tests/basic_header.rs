//! Parsing of `Authorization: Basic` and `Bearer` header values.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use occoder_auth::{AuthError, Credentials, parse_bearer};

fn basic(payload: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(payload))
}

#[test]
fn basic_header_parses() {
    let credentials =
        Credentials::from_basic_header(&basic(b"occ-0123456789abcdef:s3cr:et")).unwrap();
    assert_eq!(credentials.client_id, "occ-0123456789abcdef");
    assert_eq!(credentials.secret.expose(), "s3cr:et");
}

#[test]
fn basic_header_accepts_variants() {
    let unpadded = format!("basic {}", STANDARD_NO_PAD.encode(b"id:secret1"));
    let spaced = format!("  BASIC   {}  ", STANDARD.encode(b"id:secret1"));
    for value in [unpadded, spaced] {
        let credentials = Credentials::from_basic_header(&value).unwrap();
        assert_eq!(credentials.client_id, "id", "{value}");
        assert_eq!(credentials.secret.expose(), "secret1", "{value}");
    }
}

#[test]
fn basic_header_rejects_malformed() {
    let cases = [
        (
            "not base64",
            "Basic %%%not-base64%%%".to_owned(),
            "not valid base64",
        ),
        (
            "missing colon",
            basic(b"occ-0123456789abcdef"),
            "missing colon",
        ),
        (
            "wrong scheme",
            format!("Bearer {}", STANDARD.encode(b"id:secret")),
            "not Basic",
        ),
        ("no payload", "Basic".to_owned(), "expected `Basic"),
        ("empty id", basic(b":secret"), "client id is empty"),
        ("empty secret", basic(b"id:"), "secret is empty"),
        ("not UTF-8", basic(&[0xff, 0xfe, b':', b'x']), "not UTF-8"),
    ];
    for (name, value, expected) in cases {
        match Credentials::from_basic_header(&value) {
            Err(AuthError::InvalidBasicHeader(message)) => {
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name}: expected InvalidBasicHeader, got {other:?}"),
        }
    }
}

#[test]
fn basic_header_error_is_unauthenticated() {
    let error = Credentials::from_basic_header("Basic !!").unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unauthenticated);
}

#[test]
fn bearer_value_parses() {
    assert_eq!(parse_bearer("Bearer abc.def").unwrap(), "abc.def");
    assert_eq!(parse_bearer("  bearer   abc  ").unwrap(), "abc");
    for bad in ["", "Bearer", "Bearer   ", "Basic abc", "abc"] {
        assert!(
            matches!(parse_bearer(bad), Err(AuthError::MissingToken)),
            "{bad:?}"
        );
    }
}
