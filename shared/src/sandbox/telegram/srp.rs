//! The server side of Telegram's SRP 2FA (core.telegram.org/api/srp): the account's
//! verifier `v = g^x mod p`, the challenge `B` of `account.getPassword`, and the check of
//! the client's `A` and `M1` in `auth.checkPassword`. The password itself is never sent.

use hmac::Hmac;
use num_bigint::BigUint;
use sha2::{Digest, Sha256, Sha512};

/// Telegram's 2048-bit safe prime, with `g = 3` (core.telegram.org/api/srp, as
/// `help.getConfig`'s DH prime); grammers checks both before it answers.
pub const P_HEX: &str = "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f642477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b";
pub const G: i32 = 3;

pub fn p() -> Vec<u8> {
    (0..P_HEX.len()).step_by(2).map(|i| u8::from_str_radix(&P_HEX[i..i + 2], 16).expect("hex")).collect()
}

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// SH(data, salt) = H(salt | data | salt).
fn sh(data: &[u8], salt: &[u8]) -> [u8; 32] {
    h(&[salt, data, salt])
}

/// PH2(password, salt1, salt2) = SH(PBKDF2-HMAC-SHA512(SH(SH(password, salt1), salt2), salt1, 100000), salt2).
fn ph2(password: &[u8], salt1: &[u8], salt2: &[u8]) -> [u8; 32] {
    let ph1 = sh(&sh(password, salt1), salt2);
    let mut dk = [0u8; 64];
    pbkdf2::pbkdf2::<Hmac<Sha512>>(&ph1, salt1, 100_000, &mut dk).expect("any output length works");
    sh(&dk, salt2)
}

fn pad256(n: &BigUint) -> Vec<u8> {
    let bytes = n.to_bytes_be();
    let mut out = vec![0u8; 256usize.saturating_sub(bytes.len())];
    out.extend_from_slice(&bytes);
    out
}

/// What the server keeps of an account's cloud password.
#[derive(Clone, Debug)]
pub struct Verifier {
    pub salt1: Vec<u8>,
    pub salt2: Vec<u8>,
    v: BigUint,
}

impl Verifier {
    pub fn new(password: &str) -> Self {
        let mut salt1 = vec![0u8; 40];
        let mut salt2 = vec![0u8; 16];
        super::getrandom(&mut salt1);
        super::getrandom(&mut salt2);
        let x = BigUint::from_bytes_be(&ph2(password.as_bytes(), &salt1, &salt2));
        let v = BigUint::from(G as u32).modpow(&x, &BigUint::from_bytes_be(&p()));
        Self { salt1, salt2, v }
    }
}

/// One `account.getPassword` answer's secret half.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub user_id: i64,
    verifier: Verifier,
    b: BigUint,
    /// `srp_B`, padded to 256 bytes.
    pub g_b: Vec<u8>,
}

impl Challenge {
    pub fn new(user_id: i64, verifier: Verifier) -> Self {
        let p = BigUint::from_bytes_be(&p());
        let g = BigUint::from(G as u32);
        let b = rand_below(&p);
        let k = BigUint::from_bytes_be(&h(&[&p.to_bytes_be(), &pad256(&g)]));
        let g_b = (k * &verifier.v + g.modpow(&b, &p)) % &p;
        Self { user_id, verifier, b, g_b: pad256(&g_b) }
    }

    /// Whether the client's `A` and `M1` prove it knows the password.
    pub fn check(&self, g_a: &[u8], m1: &[u8]) -> bool {
        let p = BigUint::from_bytes_be(&p());
        let a = BigUint::from_bytes_be(g_a);
        if a <= BigUint::from(1u8) || a >= &p - 1u8 {
            return false;
        }
        let (a_pad, b_pad) = (pad256(&a), self.g_b.clone());
        let u = BigUint::from_bytes_be(&h(&[&a_pad, &b_pad]));
        let s = (a * self.verifier.v.modpow(&u, &p)).modpow(&self.b, &p);
        let k = h(&[&pad256(&s)]);
        let g = BigUint::from(G as u32);
        let (h_p, h_g) = (h(&[&p.to_bytes_be()]), h(&[&pad256(&g)]));
        let xored: Vec<u8> = h_p.iter().zip(h_g).map(|(a, b)| a ^ b).collect();
        let m = h(&[&xored, &h(&[&self.verifier.salt1]), &h(&[&self.verifier.salt2]), &a_pad, &b_pad, &k]);
        m.as_slice() == m1
    }
}

fn rand_below(p: &BigUint) -> BigUint {
    let mut bytes = [0u8; 256];
    super::getrandom(&mut bytes);
    BigUint::from_bytes_be(&bytes) % p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prime_passes_grammers_checks_and_a_right_password_proves_itself() {
        assert!(grammers_crypto::two_factor_auth::check_p_and_g(&p(), &G), "grammers refuses p or g");
        let verifier = Verifier::new("secret");
        let challenge = Challenge::new(1, verifier.clone());
        let mut a = vec![0u8; 256];
        super::super::getrandom(&mut a);
        let (m1, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(
            &verifier.salt1, &verifier.salt2, &p(), &G, challenge.g_b.clone(), a.clone(), "secret",
        );
        assert!(challenge.check(&g_a, &m1));
        let (wrong, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(&verifier.salt1, &verifier.salt2, &p(), &G, challenge.g_b.clone(), a, "guess");
        assert!(!challenge.check(&g_a, &wrong));
    }
}
