//! The openraft type configuration and the application's request and response.

use openraft::impls::BasicNode;
use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The service's openraft types: [`Request`] in, [`Response`] out, nodes known by
    /// their address ([`BasicNode`]), on tokio.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
);

/// The largest record a client may append, in bytes. A record is one line of
/// `dynadax client append`, or one `&[u8]` of [`crate::Client::append`].
pub const MAX_RECORD: usize = 1 << 20;

/// One client append: the record `bytes`, sent by client `client` as its `seq`-th
/// request. A retry carries the same `(client, seq)`, so the state machine applies it
/// once (see [`crate::StateMachine`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's id, random per client run.
    pub client: u64,
    /// The request's number among the client's, from 0; retries keep it.
    pub seq: u64,
    /// Every request of this client numbered below `acked` has had its answer: the
    /// state machine may forget them (it keeps the answers of `acked..` only, which
    /// bounds its deduplication table by what the client has in flight).
    pub acked: u64,
    /// The record.
    #[serde(with = "serde_bytes_vec")]
    pub bytes: Vec<u8>,
}

/// What applying a [`Request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The record's index in the replicated log (its LSN in every node's applied log).
    /// `None` only for a duplicate so old that its answer was forgotten (its seq is
    /// below an `acked` the same client sent later): a client that follows the rules
    /// never sees it.
    pub index: Option<u64>,
    /// The request was applied before (a retry): nothing was appended this time, and
    /// `index` is where the first one went.
    pub duplicate: bool,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "append(client {:x}, seq {}, {} bytes)", self.client, self.seq, self.bytes.len())
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "index {i}{}", if self.duplicate { " (duplicate)" } else { "" }),
            None => write!(f, "duplicate of a forgotten request"),
        }
    }
}

/// Bytes as one length-prefixed run in postcard (serde's default for `Vec<u8>` is a
/// sequence of u8, which postcard also writes compactly; JSON would write a list of
/// numbers either way). Kept explicit so the wire form does not depend on it.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Records read from the replicated log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// Each record with its index, in index order, consecutive.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The length of the node's applied log when it was read: the next index.
    pub next: u64,
}
