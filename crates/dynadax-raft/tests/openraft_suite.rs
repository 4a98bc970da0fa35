//! openraft's own storage suite (44 checks and a snapshot transfer) on a dynadax log,
//! on tmpfs (direct tail, emulated) and on the work tree's disk (cached tail,
//! `fdatasync`), paired with openraft-memstore's state machine so only the log store
//! is under test.

#[path = "../../dynadax/tests/common/layout.rs"]
mod layout;
use dynadax::log::LogOptions;
use dynadax_raft::LogStore;
use layout::layout;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use openraft_memstore::{BlockConfig, MemStateMachine, TypeConfig};
use std::path::PathBuf;
use std::sync::Arc;

struct Builder {
    /// Where each store's temporary directory is made.
    under: PathBuf,
}

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, Arc<MemStateMachine>, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, Arc<MemStateMachine>), StorageError<TypeConfig>> {
        fn err<E: std::error::Error + 'static>(e: E) -> StorageError<TypeConfig> {
            StorageError::read(TypeConfig::err_from_error(&e))
        }
        let td = tempfile::tempdir_in(&self.under).map_err(err)?;
        // Small segments, so the suite's entries span sealed segments too.
        let opts = LogOptions { segment_size: 4096, max_record: 1024, layout: layout(4096), ..LogOptions::default() };
        let store = LogStore::open(td.path().join("log"), opts).map_err(err)?;
        let sm = Arc::new(MemStateMachine::new(BlockConfig::default()));
        Ok((td, store, sm))
    }
}

#[test]
fn openraft_suite_on_tmpfs() {
    TypeConfig::run(async { Suite::test_all(Builder { under: "/dev/shm".into() }).await.unwrap() });
}

#[test]
fn openraft_suite_on_the_disk() {
    TypeConfig::run(async { Suite::test_all(Builder { under: env!("CARGO_TARGET_TMPDIR").into() }).await.unwrap() });
}
