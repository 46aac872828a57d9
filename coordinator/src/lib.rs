//! The txmesh coordinator: a Seata-compatible transaction coordinator whose state is a
//! replicated state machine.

pub mod state;
