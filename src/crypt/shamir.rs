//! Shamir secret sharing over GF(2^8), byte-compatible with sops' (HashiCorp Vault's) scheme:
//! the AES field (x^8+x^4+x^3+x+1), share = `y_1 … y_n ‖ x` with x = group index + 1 (spec §8).

use rand::RngCore;
use zeroize::Zeroizing;

/// Multiplication in GF(2^8) without tables or secret-dependent branches.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// a^254 = a^-1 for a ≠ 0.
fn inverse(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exponent = 254u8;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exponent >>= 1;
    }
    result
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it.
pub fn split(secret: &[u8], parts: usize, threshold: usize) -> Option<Vec<Zeroizing<Vec<u8>>>> {
    if threshold < 2 || parts < threshold || parts > 255 || secret.is_empty() {
        return None;
    }
    let mut shares: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + 1)))
        .collect();
    let mut coefficients = Zeroizing::new(vec![0u8; threshold - 1]);
    for &byte in secret {
        rand::rngs::OsRng.fill_bytes(&mut coefficients);
        for (index, share) in shares.iter_mut().enumerate() {
            let x = (index + 1) as u8;
            // Horner: ((c_{t-1}·x + c_{t-2})·x + … + c_1)·x + secret
            let mut y = 0u8;
            for &c in coefficients.iter().rev() {
                y = mul(y, x) ^ c;
            }
            share.push(mul(y, x) ^ byte);
        }
    }
    for (index, share) in shares.iter_mut().enumerate() {
        share.push((index + 1) as u8);
    }
    Some(shares)
}

/// Recombines shares (all of equal length ≥ 2, distinct x). Returns `None` when they cannot be
/// combined.
pub fn combine(shares: &[&[u8]]) -> Option<Zeroizing<Vec<u8>>> {
    let len = shares.first()?.len();
    if shares.len() < 2 || len < 2 || shares.iter().any(|s| s.len() != len) {
        return None;
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return None;
        }
    }
    let mut secret = Zeroizing::new(Vec::with_capacity(len - 1));
    for byte in 0..len - 1 {
        // Lagrange interpolation at 0: Σ y_i · Π_{j≠i} x_j / (x_j − x_i); subtraction is XOR.
        let mut value = 0u8;
        for (i, share) in shares.iter().enumerate() {
            let mut basis = 1u8;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    basis = mul(basis, mul(xj, inverse(xj ^ xs[i])));
                }
            }
            value ^= mul(share[byte], basis);
        }
        secret.push(value);
    }
    Some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic_matches_sops() {
        assert_eq!(mul(3, 7), 9);
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(inverse(3), 6), 2);
    }

    #[test]
    fn spec_worked_example_combines() {
        // secret 42ab, t = 2, coefficients 07, 1f → shares 45b401, 4c9502, 4b8a03 (spec §8)
        let shares: [&[u8]; 3] = [
            &[0x45, 0xb4, 0x01],
            &[0x4c, 0x95, 0x02],
            &[0x4b, 0x8a, 0x03],
        ];
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let chosen = [shares[pair[0]], shares[pair[1]]];
            assert_eq!(combine(&chosen).unwrap().as_slice(), &[0x42, 0xab]);
        }
    }

    #[test]
    fn any_threshold_subset_recovers() {
        let secret: Vec<u8> = (0..32).collect();
        let shares = split(&secret, 5, 3).unwrap();
        let pick = [
            shares[4].as_slice(),
            shares[1].as_slice(),
            shares[2].as_slice(),
        ];
        assert_eq!(combine(&pick).unwrap().as_slice(), secret.as_slice());
        assert!(shares.iter().all(|s| s.len() == 33));
        assert_eq!(shares[3][32], 4, "x is the last byte");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(split(&[1], 1, 2).is_none());
        assert!(combine(&[&[1, 1], &[2, 1]]).is_none(), "same x twice");
        assert!(combine(&[&[1, 1], &[2, 2, 2]]).is_none());
    }
}
