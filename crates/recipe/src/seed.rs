//! Seeds for requests that ask for a random one.

/// A random seed from the OS source, below 2^53 so JavaScript numbers hold it exactly.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    u64::from_le_bytes(bytes) >> 11
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_fit_javascript_numbers_and_differ() {
        let seeds: Vec<u64> = (0..64).map(|_| super::random_seed()).collect();
        assert!(seeds.iter().all(|s| *s < 1 << 53));
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert!(unique.len() > 60, "{seeds:?}");
    }
}
