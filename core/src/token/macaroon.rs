//! Macaroons, byte-compatible with libmacaroons and pymacaroons: the HMAC-SHA256 chain, the V1,
//! V2 binary and V2 JSON formats, third-party caveats (the caveat key sealed in the VID with
//! XSalsa20-Poly1305) and discharge macaroons bound to the root.
//!
//! Long (about 790 lines of code and the libmacaroons test): the three formats, the chain and
//! the verifier are one byte-compatible implementation, kept together so they cannot drift.
//!
//! A request's `token` holds one serialized macaroon, or a JSON array whose first element is
//! the root macaroon and the rest its discharges (each a serialized string or a V2 JSON object).

use aws_lc_rs::{constant_time, hmac, rand};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde_json::{json, Map, Value};

use super::caveat::Caveat;
use super::config::{MacaroonConfig, TokenLimits};
use super::{secret, ClaimsJson, PrincipalMap, TokenError, Verified, VerifiedKind};
use crate::bundle::BundleFile;
use crate::wire::decision::DecisionErrorKind;

const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";
const NONCE_BYTES: usize = 24;

/// A caveat as carried by a macaroon: first-party when `vid` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacaroonCaveat {
    /// The caveat identifier (a first-party caveat's predicate).
    pub id: Vec<u8>,
    /// The verification id of a third-party caveat.
    pub vid: Option<Vec<u8>>,
    /// Where a third-party caveat is discharged.
    pub location: Option<String>,
}

/// A macaroon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macaroon {
    location: Option<String>,
    identifier: Vec<u8>,
    caveats: Vec<MacaroonCaveat>,
    signature: [u8; 32],
}

/// Serialization formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libmacaroons version 1: base64url of text packets.
    V1,
    /// Version 2 binary, base64url without padding.
    V2,
    /// Version 2 JSON.
    V2Json,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// libmacaroons' `macaroon_hash2`: HMAC(key, HMAC(key, a) || HMAC(key, b)).
fn hash2(key: &[u8], a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(&hmac_sha256(key, a));
    both[32..].copy_from_slice(&hmac_sha256(key, b));
    hmac_sha256(key, &both)
}

/// The key a variable-length root key stands for.
fn derive_key(root_key: &[u8]) -> [u8; 32] {
    hmac_sha256(KEY_GENERATOR, root_key)
}

/// A discharge's signature bound to the root's.
fn bind_signature(root: &[u8; 32], discharge: &[u8; 32]) -> [u8; 32] {
    hash2(&[0u8; 32], root, discharge)
}

/// JSON that no other reader could read differently: a member given twice is refused.
fn strict_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TokenError> {
    crate::wire::json::unique_keys(text).map_err(|_| bad_format("a JSON member is given twice"))?;
    serde_json::from_str(text).map_err(|_| bad_format("invalid JSON"))
}

fn bad_format(message: &str) -> TokenError {
    TokenError::malformed(format!("not a macaroon: {message}"))
}

impl Macaroon {
    /// A new macaroon for `identifier`, signed with `root_key`.
    pub fn mint(root_key: &[u8], identifier: impl Into<Vec<u8>>, location: Option<&str>) -> Self {
        Self::with_derived_key(&derive_key(root_key), identifier.into(), location)
    }

    fn with_derived_key(key: &[u8; 32], identifier: Vec<u8>, location: Option<&str>) -> Self {
        Self {
            location: location.map(str::to_owned),
            signature: hmac_sha256(key, &identifier),
            identifier,
            caveats: Vec::new(),
        }
    }

    /// The identifier.
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// The location, if any.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The caveats, in order.
    pub fn caveats(&self) -> &[MacaroonCaveat] {
        &self.caveats
    }

    /// The signature.
    pub fn signature(&self) -> [u8; 32] {
        self.signature
    }

    /// Adds a first-party caveat (attenuation needs no key).
    pub fn add_first_party_caveat(&mut self, predicate: impl Into<Vec<u8>>) {
        let id = predicate.into();
        self.signature = hmac_sha256(&self.signature, &id);
        self.caveats.push(MacaroonCaveat {
            id,
            vid: None,
            location: None,
        });
    }

    /// Adds a third-party caveat: the third party, knowing `caveat_key`, issues a discharge
    /// macaroon for `caveat_id` ([`Macaroon::discharge`]).
    pub fn add_third_party_caveat(
        &mut self,
        caveat_key: &[u8],
        caveat_id: impl Into<Vec<u8>>,
        location: Option<&str>,
    ) {
        let id = caveat_id.into();
        let mut nonce = [0u8; NONCE_BYTES];
        // The system random source failing is not recoverable in any useful way here.
        rand::fill(&mut nonce).expect("system random source");
        let sealed = XSalsa20Poly1305::new(&self.signature.into())
            .encrypt(&nonce.into(), derive_key(caveat_key).as_slice())
            .expect("sealing 32 bytes cannot fail");
        let mut vid = nonce.to_vec();
        vid.extend_from_slice(&sealed);
        self.signature = hash2(&self.signature, &vid, &id);
        self.caveats.push(MacaroonCaveat {
            id,
            vid: Some(vid),
            location: location.map(str::to_owned),
        });
    }

    /// The discharge macaroon a third party mints for one of its caveats.
    pub fn discharge(
        caveat_key: &[u8],
        caveat_id: impl Into<Vec<u8>>,
        location: Option<&str>,
    ) -> Self {
        Self::mint(caveat_key, caveat_id, location)
    }

    /// `discharge` bound to this (root) macaroon, ready to send with it.
    pub fn bind(&self, discharge: &Macaroon) -> Macaroon {
        let mut bound = discharge.clone();
        bound.signature = bind_signature(&self.signature, &discharge.signature);
        bound
    }

    /// Serializes in `format`.
    pub fn serialize(&self, format: Format) -> String {
        match format {
            Format::V1 => URL_SAFE_NO_PAD.encode(self.v1_bytes()),
            Format::V2 => URL_SAFE_NO_PAD.encode(self.v2_bytes()),
            Format::V2Json => self.v2_json().to_string(),
        }
    }

    fn v1_bytes(&self) -> Vec<u8> {
        fn packet(out: &mut Vec<u8>, key: &str, value: &[u8]) {
            let len = 4 + key.len() + 1 + value.len() + 1;
            out.extend_from_slice(format!("{len:04x}").as_bytes());
            out.extend_from_slice(key.as_bytes());
            out.push(b' ');
            out.extend_from_slice(value);
            out.push(b'\n');
        }
        let mut out = Vec::new();
        packet(
            &mut out,
            "location",
            self.location.as_deref().unwrap_or_default().as_bytes(),
        );
        packet(&mut out, "identifier", &self.identifier);
        for c in &self.caveats {
            packet(&mut out, "cid", &c.id);
            if let Some(vid) = &c.vid {
                packet(&mut out, "vid", vid);
                packet(
                    &mut out,
                    "cl",
                    c.location.as_deref().unwrap_or_default().as_bytes(),
                );
            }
        }
        packet(&mut out, "signature", &self.signature);
        out
    }

    fn v2_bytes(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
            out.push(kind);
            varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
        let mut out = vec![2u8];
        if let Some(location) = &self.location {
            field(&mut out, 1, location.as_bytes());
        }
        field(&mut out, 2, &self.identifier);
        out.push(0);
        for c in &self.caveats {
            if let Some(location) = &c.location {
                field(&mut out, 1, location.as_bytes());
            }
            field(&mut out, 2, &c.id);
            if let Some(vid) = &c.vid {
                field(&mut out, 4, vid);
            }
            out.push(0);
        }
        out.push(0);
        field(&mut out, 6, &self.signature);
        out
    }

    fn v2_json(&self) -> Value {
        fn data(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
            match std::str::from_utf8(bytes) {
                Ok(text) => object.insert(name.to_owned(), Value::String(text.to_owned())),
                Err(_) => object.insert(
                    format!("{name}64"),
                    Value::String(URL_SAFE_NO_PAD.encode(bytes)),
                ),
            };
        }
        let mut object = Map::new();
        object.insert("v".into(), json!(2));
        if let Some(location) = &self.location {
            object.insert("l".into(), json!(location));
        }
        data(&mut object, "i", &self.identifier);
        let caveats: Vec<Value> = self
            .caveats
            .iter()
            .map(|c| {
                let mut caveat = Map::new();
                data(&mut caveat, "i", &c.id);
                if let Some(vid) = &c.vid {
                    caveat.insert("v64".into(), json!(URL_SAFE_NO_PAD.encode(vid)));
                }
                if let Some(location) = &c.location {
                    caveat.insert("l".into(), json!(location));
                }
                Value::Object(caveat)
            })
            .collect();
        object.insert("c".into(), Value::Array(caveats));
        object.insert("s64".into(), json!(URL_SAFE_NO_PAD.encode(self.signature)));
        Value::Object(object)
    }

    /// Reads a macaroon in any of the three formats.
    pub fn deserialize(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.starts_with('{') {
            let value: Value = strict_json(text)?;
            return Self::from_v2_json(&value);
        }
        let bytes = decode_base64(text).ok_or_else(|| bad_format("not base64"))?;
        match bytes.first() {
            Some(2) => Self::from_v2_bytes(&bytes),
            Some(_) => Self::from_v1_bytes(&bytes),
            None => Err(bad_format("empty")),
        }
    }

    fn from_v1_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut packets = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let header = rest
                .get(..4)
                .ok_or_else(|| bad_format("truncated V1 packet"))?;
            let len = std::str::from_utf8(header)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .filter(|len| *len >= 6 && *len <= rest.len())
                .ok_or_else(|| bad_format("bad V1 packet length"))?;
            let body = &rest[4..len];
            let body = body
                .strip_suffix(b"\n")
                .ok_or_else(|| bad_format("V1 packet without newline"))?;
            let space = body
                .iter()
                .position(|b| *b == b' ')
                .ok_or_else(|| bad_format("V1 packet without key"))?;
            packets.push((&body[..space], &body[space + 1..]));
            rest = &rest[len..];
        }
        let mut packets = packets.into_iter().peekable();
        let mut next_is = |key: &[u8]| packets.next_if(|(k, _)| *k == key).map(|(_, v)| v);
        let location = next_is(b"location")
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .filter(|l| !l.is_empty());
        let identifier = next_is(b"identifier")
            .ok_or_else(|| bad_format("V1 macaroon without identifier"))?
            .to_vec();
        let mut caveats = Vec::new();
        while let Some(id) = next_is(b"cid") {
            let vid = next_is(b"vid").map(<[u8]>::to_vec);
            let location = next_is(b"cl")
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .filter(|l| !l.is_empty());
            caveats.push(MacaroonCaveat {
                id: id.to_vec(),
                vid,
                location,
            });
        }
        let signature =
            next_is(b"signature").ok_or_else(|| bad_format("V1 macaroon without signature"))?;
        if packets.peek().is_some() {
            return Err(bad_format("unexpected V1 packet"));
        }
        Ok(Self {
            location,
            identifier,
            caveats,
            signature: signature
                .try_into()
                .map_err(|_| bad_format("signature is not 32 bytes"))?,
        })
    }

    fn from_v2_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut reader = Reader { bytes, at: 1 };
        let location = reader
            .optional(1)?
            .map(|l| String::from_utf8_lossy(l).into_owned());
        let identifier = reader.required(2)?.to_vec();
        reader.end_of_section()?;
        let mut caveats = Vec::new();
        while !reader.at_end_of_section() {
            let location = reader
                .optional(1)?
                .map(|l| String::from_utf8_lossy(l).into_owned());
            let id = reader.required(2)?.to_vec();
            let vid = reader.optional(4)?.map(<[u8]>::to_vec);
            reader.end_of_section()?;
            caveats.push(MacaroonCaveat { id, vid, location });
        }
        reader.end_of_section()?;
        let signature = reader.required(6)?;
        if reader.at != bytes.len() {
            return Err(bad_format("trailing bytes after the signature"));
        }
        Ok(Self {
            location,
            identifier,
            caveats,
            signature: signature
                .try_into()
                .map_err(|_| bad_format("signature is not 32 bytes"))?,
        })
    }

    fn from_v2_json(value: &Value) -> Result<Self, TokenError> {
        let object = value
            .as_object()
            .ok_or_else(|| bad_format("V2 JSON is an object"))?;
        // pymacaroons leaves `v` out; any other version than 2 is refused.
        match object.get("v") {
            None => {}
            Some(v) if v == &json!(2) || v == &json!("2") => {}
            Some(_) => return Err(bad_format("V2 JSON with a version other than 2")),
        }
        let location = match object.get("l") {
            None => None,
            Some(Value::String(l)) => Some(l.clone()),
            Some(_) => return Err(bad_format("`l` must be a string")),
        };
        let identifier =
            json_data(object, "i")?.ok_or_else(|| bad_format("V2 JSON without identifier"))?;
        let mut caveats = Vec::new();
        for c in object
            .get("c")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let c = c
                .as_object()
                .ok_or_else(|| bad_format("a caveat must be an object"))?;
            caveats.push(MacaroonCaveat {
                id: json_data(c, "i")?.ok_or_else(|| bad_format("caveat without identifier"))?,
                vid: json_data(c, "v")?,
                location: c.get("l").and_then(Value::as_str).map(str::to_owned),
            });
        }
        let signature =
            json_data(object, "s")?.ok_or_else(|| bad_format("V2 JSON without signature"))?;
        Ok(Self {
            location,
            identifier,
            caveats,
            signature: signature
                .as_slice()
                .try_into()
                .map_err(|_| bad_format("signature is not 32 bytes"))?,
        })
    }
}

/// A V2 JSON data field: `x` (UTF-8) or `x64` (base64, URL-safe or standard, padding optional),
/// never both.
fn json_data(object: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, TokenError> {
    let plain = object.get(name);
    let encoded = object.get(&format!("{name}64"));
    match (plain, encoded) {
        (Some(_), Some(_)) => Err(bad_format("a field is given twice")),
        (Some(Value::String(s)), None) => Ok(Some(s.as_bytes().to_vec())),
        (None, Some(Value::String(s))) => decode_base64(s)
            .map(Some)
            .ok_or_else(|| bad_format("bad base64 field")),
        (None, None) => Ok(None),
        _ => Err(bad_format("a data field must be a string")),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
        .iter()
        .find_map(|e| e.decode(text).ok())
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, TokenError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| bad_format("truncated"))?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad_format("varint too long"))
    }

    fn peek_kind(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn optional(&mut self, kind: u8) -> Result<Option<&'a [u8]>, TokenError> {
        if self.peek_kind() != Some(kind) {
            return Ok(None);
        }
        self.at += 1;
        let len = usize::try_from(self.varint()?).map_err(|_| bad_format("field too long"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| bad_format("truncated field"))?;
        let data = &self.bytes[self.at..end];
        self.at = end;
        Ok(Some(data))
    }

    fn required(&mut self, kind: u8) -> Result<&'a [u8], TokenError> {
        self.optional(kind)?
            .ok_or_else(|| bad_format("missing field"))
    }

    fn at_end_of_section(&self) -> bool {
        self.peek_kind() == Some(0)
    }

    fn end_of_section(&mut self) -> Result<(), TokenError> {
        if self.at_end_of_section() {
            self.at += 1;
            Ok(())
        } else {
            Err(bad_format("expected end of section"))
        }
    }
}

/// Verifies `root` and its discharges against a root key, returning every first-party caveat
/// predicate met along the way (the root's and the discharges').
pub fn verify_signature(
    root: &Macaroon,
    root_key: &[u8],
    discharges: &[Macaroon],
) -> Result<Vec<Vec<u8>>, TokenError> {
    let mut used = vec![false; discharges.len()];
    let mut predicates = Vec::new();
    verify_chain(
        root,
        &derive_key(root_key),
        root,
        discharges,
        &mut used,
        &mut predicates,
    )?;
    Ok(predicates)
}

fn verify_chain(
    macaroon: &Macaroon,
    key: &[u8; 32],
    root: &Macaroon,
    discharges: &[Macaroon],
    used: &mut [bool],
    predicates: &mut Vec<Vec<u8>>,
) -> Result<(), TokenError> {
    let mut signature = hmac_sha256(key, &macaroon.identifier);
    for caveat in &macaroon.caveats {
        match &caveat.vid {
            None => {
                predicates.push(caveat.id.clone());
                signature = hmac_sha256(&signature, &caveat.id);
            }
            Some(vid) => {
                // Each discharge serves one caveat at most, which also bounds the recursion.
                let n = (0..discharges.len())
                    .find(|&n| !used[n] && discharges[n].identifier == caveat.id)
                    .ok_or_else(|| {
                        TokenError::new(
                            DecisionErrorKind::CaveatNotSatisfied,
                            "a third-party caveat has no discharge macaroon",
                        )
                    })?;
                used[n] = true;
                let caveat_key = open_vid(&signature, vid)?;
                verify_chain(
                    &discharges[n],
                    &caveat_key,
                    root,
                    discharges,
                    used,
                    predicates,
                )?;
                signature = hash2(&signature, vid, &caveat.id);
            }
        }
    }
    let expected = if std::ptr::eq(macaroon, root) {
        signature
    } else {
        bind_signature(&root.signature, &signature)
    };
    constant_time::verify_slices_are_equal(&expected, &macaroon.signature).map_err(|_| {
        TokenError::new(
            DecisionErrorKind::BadSignature,
            "the macaroon's signature does not verify",
        )
    })
}

fn open_vid(signature: &[u8; 32], vid: &[u8]) -> Result<[u8; 32], TokenError> {
    let bad = || {
        TokenError::new(
            DecisionErrorKind::BadSignature,
            "a third-party caveat's verification id does not open",
        )
    };
    if vid.len() <= NONCE_BYTES {
        return Err(bad());
    }
    let (nonce, sealed) = vid.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| bad())?;
    let key = XSalsa20Poly1305::new(&(*signature).into())
        .decrypt(&nonce.into(), sealed)
        .map_err(|_| bad())?;
    key.as_slice().try_into().map_err(|_| bad())
}

/// The macaroon verifier of a bundle.
pub(crate) struct Macaroons {
    root_keys: Vec<Vec<u8>>,
    location: Option<String>,
    principal: PrincipalMap,
}

impl Macaroons {
    pub(crate) fn load(config: &MacaroonConfig, files: &[BundleFile]) -> Result<Self, String> {
        let mut root_keys = Vec::new();
        for key in &config.root_keys {
            if let Some(secret) = secret(
                files,
                key.secret_file.as_deref(),
                key.secret_env.as_deref(),
                key.secret_encoding,
            )
            .map_err(|e| format!("root key `{}`: {e}", key.id))?
            {
                root_keys.push(secret);
            }
        }
        let principal = PrincipalMap::new(&config.principal)?;
        if principal.id_caveat.is_none() && principal.fixed_id.is_none() {
            return Err("the principal needs `id_caveat` (or a fixed `id`)".into());
        }
        Ok(Self {
            root_keys,
            location: config.location.clone(),
            principal,
        })
    }

    pub(crate) fn verify(
        &self,
        token: &str,
        limits: &TokenLimits,
        now: i64,
    ) -> Result<Verified, TokenError> {
        let stack = parse_stack(token, limits)?;
        let (root, discharges) = stack
            .split_first()
            .ok_or_else(|| bad_format("empty macaroon list"))?;
        if let (Some(want), Some(got)) = (&self.location, &root.location) {
            if want != got {
                return Err(TokenError::new(
                    DecisionErrorKind::UnknownIssuer,
                    "the macaroon's location is not this service",
                ));
            }
        }
        if self.root_keys.is_empty() {
            return Err(TokenError::new(
                DecisionErrorKind::UnknownKey,
                "no macaroon root key is configured",
            ));
        }
        // Every root key is tried, so rotation needs no key id in the identifier.
        let predicates = self
            .root_keys
            .iter()
            .find_map(|key| verify_signature(root, key, discharges).ok())
            .ok_or_else(|| {
                TokenError::new(
                    DecisionErrorKind::BadSignature,
                    "the macaroon's signature does not verify",
                )
            })?;
        // The principal comes only from what the minter alone could write: the configured
        // fixed id, or the root macaroon's identifier. Caveats (which any holder may append,
        // to the root or to a discharge) only narrow: one naming the principal must agree.
        let principal_name = self.principal.id_caveat.as_deref().unwrap_or("user");
        let id = match &self.principal.fixed_id {
            Some(id) => id.clone(),
            None => identifier_principal(&root.identifier, principal_name)?,
        };
        let mut caveats = Vec::new();
        let mut valid_until: Option<i64> = None;
        let mut texts = Vec::new();
        for predicate in &predicates {
            texts.push(Value::String(
                String::from_utf8_lossy(predicate).into_owned(),
            ));
            match Caveat::parse(predicate, principal_name)? {
                Caveat::Principal(named) if named == id => {}
                Caveat::Principal(_) => {
                    return Err(TokenError::new(
                        DecisionErrorKind::CaveatNotSatisfied,
                        format!(
                            "a `{principal_name} = ...` caveat limits the macaroon to another \
                             principal than its identifier names"
                        ),
                    ))
                }
                Caveat::Expires(t) => valid_until = Some(valid_until.map_or(t, |v| v.min(t))),
                other => caveats.push(other),
            }
        }
        let verified = Verified {
            kind: VerifiedKind::Macaroon,
            token_id: Some(String::from_utf8_lossy(&root.identifier).into_owned()),
            principal: self.principal.principal(id, Default::default())?,
            context: None,
            valid_from: None,
            valid_until,
            caveats,
            claims: ClaimsJson::Value(json!({
                "identifier": String::from_utf8_lossy(&root.identifier),
                "location": root.location,
                "caveats": texts,
                "discharges": discharges.len(),
            })),
        };
        verified.check_time(now)?;
        Ok(verified)
    }
}

/// The principal a root macaroon's identifier names: the identifier is `;`-separated fields,
/// exactly one of them `<name> = <id>` (e.g. `user = 42; nonce = 8f3a`); the other fields are
/// the minter's own (a nonce, a key id) and are not read.
fn identifier_principal(identifier: &[u8], name: &str) -> Result<String, TokenError> {
    let text = std::str::from_utf8(identifier).unwrap_or_default();
    let mut named = text.split(';').filter_map(|field| {
        let (field_name, id) = field.split_once('=')?;
        (field_name.trim() == name).then(|| id.trim())
    });
    match (named.next(), named.next()) {
        (Some(id), None) if !id.is_empty() => Ok(id.to_owned()),
        (None, _) => Err(TokenError::new(
            DecisionErrorKind::MissingClaim,
            format!("the macaroon's identifier names no principal (`{name} = ...`)"),
        )),
        _ => Err(TokenError::invalid_claim(format!(
            "the macaroon's identifier must name one principal (`{name} = ...`) with an id"
        ))),
    }
}

/// One macaroon, or a JSON array of a root macaroon and its discharges.
fn parse_stack(token: &str, limits: &TokenLimits) -> Result<Vec<Macaroon>, TokenError> {
    let stack = if token.starts_with('[') {
        let items: Vec<Value> = strict_json(token)?;
        if items.len() > limits.max_discharges + 1 {
            return Err(TokenError::new(
                DecisionErrorKind::TooLarge,
                format!(
                    "{} discharge macaroons; at most {} are accepted",
                    items.len() - 1,
                    limits.max_discharges
                ),
            ));
        }
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Macaroon::deserialize(s),
                Value::Object(_) => Macaroon::from_v2_json(item),
                _ => Err(bad_format(
                    "a macaroon list holds strings or V2 JSON objects",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![Macaroon::deserialize(token)?]
    };
    if let Some(m) = stack.iter().find(|m| m.caveats.len() > limits.max_caveats) {
        return Err(TokenError::new(
            DecisionErrorKind::TooLarge,
            format!(
                "a macaroon with {} caveats; at most {} are accepted",
                m.caveats.len(),
                limits.max_caveats
            ),
        ));
    }
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libmacaroons' language-independent verifier tests (`*.vtest`).
    #[test]
    fn libmacaroons_vtests_all_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/libmacaroons");
        let mut ran = 0;
        for entry in std::fs::read_dir(&dir).expect("the libmacaroons corpus is present") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "vtest") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            let authorized = match lines[1] {
                "authorized" => true,
                "unauthorized" => false,
                other => panic!("{}: {other}", path.display()),
            };
            let key = lines[2].strip_prefix("key ").unwrap();
            let mut exact = Vec::new();
            let mut macaroons = Vec::new();
            for line in &lines[3..] {
                if let Some(predicate) = line.strip_prefix("exact ") {
                    exact.push(predicate.as_bytes().to_vec());
                } else {
                    assert!(
                        !line.starts_with("general"),
                        "general caveats are not used by this corpus"
                    );
                    let decoded = String::from_utf8(
                        STANDARD
                            .decode(line)
                            .or_else(|_| URL_SAFE_NO_PAD.decode(line))
                            .unwrap(),
                    );
                    // V1 macaroons are base64 text themselves; V2 ones decode to binary.
                    let serialized = match decoded {
                        Ok(text) if text.bytes().all(|b| b.is_ascii_graphic()) => text,
                        _ => line.to_string(),
                    };
                    macaroons.push(
                        Macaroon::deserialize(&serialized)
                            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display())),
                    );
                }
            }
            let (root, discharges) = macaroons.split_first().unwrap();
            let result = verify_signature(root, key.as_bytes(), discharges)
                .map(|predicates| predicates.iter().all(|p| exact.contains(p)));
            assert_eq!(result.unwrap_or(false), authorized, "{}", path.display());
            ran += 1;
        }
        assert_eq!(ran, 16);
    }

    #[test]
    fn every_format_round_trips_with_third_party_caveats() {
        let mut root = Macaroon::mint(b"root secret", "key-1", Some("https://gitlab.example.com"));
        root.add_first_party_caveat("user = 42");
        root.add_third_party_caveat(
            b"shared with auth",
            "check-2fa",
            Some("https://auth.example.com"),
        );
        root.add_first_party_caveat("action = push_code");
        for format in [Format::V1, Format::V2, Format::V2Json] {
            assert_eq!(
                Macaroon::deserialize(&root.serialize(format)).unwrap(),
                root,
                "{format:?}"
            );
        }
        let discharge = Macaroon::discharge(b"shared with auth", "check-2fa", None);
        let bound = root.bind(&discharge);
        let predicates =
            verify_signature(&root, b"root secret", std::slice::from_ref(&bound)).unwrap();
        assert_eq!(
            predicates,
            [b"user = 42".to_vec(), b"action = push_code".to_vec()]
        );

        assert!(
            verify_signature(&root, b"root secret", &[]).is_err(),
            "a missing discharge fails"
        );
        assert!(
            verify_signature(&root, b"root secret", &[discharge]).is_err(),
            "an unbound discharge fails"
        );
        assert!(verify_signature(&root, b"other secret", std::slice::from_ref(&bound)).is_err());
        let mut tampered = root.clone();
        tampered.caveats[0].id = b"user = 43".to_vec();
        assert!(verify_signature(&tampered, b"root secret", &[bound]).is_err());
    }
}
