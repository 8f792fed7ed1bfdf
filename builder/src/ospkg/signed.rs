//! OpenPGP checks on repository metadata: a deb archive's clearsigned
//! `InRelease` and an rpm repository's detached `repomd.xml.asc`, each against
//! the archive keys the OS source names (primary keys and their bound subkeys).

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

/// The archive keys of one OS source.
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// `texts`: armored public keys (one or more per text). `Err` names the
    /// key file that does not parse.
    pub fn parse(names: &[String], texts: &[String]) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (name, text) in names.iter().zip(texts) {
            let (parsed, _) = SignedPublicKey::from_string_many(text)
                .map_err(|e| format!("archive key {name}: {e}"))?;
            for k in parsed {
                // The primary key is the trust anchor as the catalog holds it
                // (archive keys also carry other keys' certifications, which
                // need not verify here); subkeys count only when bound.
                keys.push(k.map_err(|e| format!("archive key {name}: {e}"))?);
            }
        }
        if keys.is_empty() {
            return Err(format!("no archive key in {}", names.join(", ")));
        }
        Ok(Keyring { keys })
    }

    /// Fingerprints, for messages.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.fingerprint().as_bytes()))
            .collect()
    }

    /// Verifies a clearsigned document and returns the text that was signed.
    pub fn verify_clearsigned(&self, text: &str) -> Result<String, String> {
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| format!("not an OpenPGP clearsigned document: {e}"))?;
        let signed = msg.signed_text();
        for sig in msg.signatures() {
            if self.verifies(sig, signed.as_bytes()) {
                return Ok(msg.text().to_string());
            }
        }
        Err(self.no_good_signature(msg.signatures().len()))
    }

    /// Verifies an armored detached signature over `data`.
    pub fn verify_detached(&self, data: &[u8], armored_sig: &str) -> Result<(), String> {
        let (sigs, _) = DetachedSignature::from_string_many(armored_sig)
            .map_err(|e| format!("not an OpenPGP signature: {e}"))?;
        let sigs: Vec<DetachedSignature> = sigs.filter_map(|s| s.ok()).collect();
        for sig in &sigs {
            if self.verifies(&sig.signature, data) {
                return Ok(());
            }
        }
        Err(self.no_good_signature(sigs.len()))
    }

    /// A good signature by a primary key, or by a subkey its primary key binds.
    fn verifies(&self, sig: &Signature, data: &[u8]) -> bool {
        self.keys.iter().any(|k| {
            sig.verify(&k.primary_key, data).is_ok()
                || k.public_subkeys.iter().any(|s| {
                    s.verify_bindings(&k.primary_key).is_ok() && sig.verify(&s.key, data).is_ok()
                })
        })
    }

    fn no_good_signature(&self, count: usize) -> String {
        format!(
            "none of its {count} signature(s) verifies with the archive keys ({})",
            self.fingerprints().join(", ")
        )
    }
}
