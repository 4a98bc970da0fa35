//! dynadax-service: a replicated log service. Nodes keep their Raft log in a dynadax
//! log ([`dynadax_raft::LogStore`]), replicate it with openraft over HTTP, and apply
//! each committed client append as the next record of a second dynadax log, the
//! replicated log clients read (see `docs/service.md`).

#![warn(missing_docs)]

mod machine;
mod types;

pub use machine::{Progress, StateMachine};
pub use types::{NodeId, Records, Request, Response, TypeConfig, MAX_RECORD};
