//! The key a TCP flow of passive capture is found by.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// Both addresses of a flow, the lower first, so that both directions find the same flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FlowKey(pub SocketAddr, pub SocketAddr);

impl FlowKey {
    /// The key of a segment from `src` to `dst`.
    pub(super) fn of(src: SocketAddr, dst: SocketAddr) -> FlowKey {
        if src <= dst {
            FlowKey(src, dst)
        } else {
            FlowKey(dst, src)
        }
    }
}

/// Hashed as a few whole words. Every segment looks its flow up and puts it back, and the
/// derived hash of two `SocketAddr`s hands the hasher a dozen small pieces (discriminants,
/// slice lengths, octets, ports): ~55 instructions a hash in an import's profile. Keys that
/// are equal hash the same here (IPv6 flow labels and scopes are left out of the hash, not
/// out of the comparison).
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fn parts(a: &SocketAddr) -> (u128, u16) {
            match a {
                SocketAddr::V4(v) => (u128::from(u32::from(*v.ip())), v.port()),
                SocketAddr::V6(v) => (u128::from(*v.ip()) ^ (1 << 127), v.port()),
            }
        }
        let (a, pa) = parts(&self.0);
        let (b, pb) = parts(&self.1);
        state.write_u128(a);
        state.write_u128(b);
        state.write_u32(u32::from(pa) << 16 | u32::from(pb));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn both_directions_find_one_key_and_hash() {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(FlowKey::of(a, b), FlowKey::of(b, a));
        let s = foldhash::fast::FixedState::with_seed(7);
        assert_eq!(s.hash_one(FlowKey::of(a, b)), s.hash_one(FlowKey::of(b, a)));
        assert_ne!(s.hash_one(FlowKey::of(a, b)), s.hash_one(FlowKey::of(a, c)));
    }
}
