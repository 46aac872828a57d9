//! Seata's enums ⇄ `txmesh.v1`'s.

use txmesh_api::v1;
use txmesh_seata::{BranchType, GlobalStatus};

/// The API's branch type for Seata's.
pub fn branch_type_to_api(branch_type: BranchType) -> v1::BranchType {
    match branch_type {
        BranchType::At => v1::BranchType::At,
        BranchType::Tcc => v1::BranchType::Tcc,
        BranchType::Saga | BranchType::SagaAnnotation => v1::BranchType::Saga,
        BranchType::Xa => v1::BranchType::Xa,
    }
}

/// Seata's branch type for the API's; unspecified means TCC.
pub fn branch_type_from_api(branch_type: v1::BranchType) -> BranchType {
    match branch_type {
        v1::BranchType::Unspecified | v1::BranchType::Tcc => BranchType::Tcc,
        v1::BranchType::At => BranchType::At,
        v1::BranchType::Saga => BranchType::Saga,
        v1::BranchType::Xa => BranchType::Xa,
    }
}

/// The API's global status for Seata's (the numbers are the same).
pub fn global_status_to_api(status: GlobalStatus) -> v1::GlobalStatus {
    v1::GlobalStatus::try_from(i32::from(status.code())).unwrap_or(v1::GlobalStatus::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seata_global_status_has_its_api_twin() {
        assert_eq!(
            global_status_to_api(GlobalStatus::UnKnown),
            v1::GlobalStatus::Unspecified
        );
        for status in &GlobalStatus::ALL[1..] {
            let api = global_status_to_api(*status);
            assert_eq!(api as i32, i32::from(status.code()));
            let seata_name = status.name().to_ascii_uppercase();
            assert_eq!(
                api.as_str_name().replace('_', ""),
                format!("GLOBAL_STATUS_{seata_name}").replace('_', ""),
                "{status}"
            );
        }
    }

    #[test]
    fn branch_types_round_trip() {
        for t in [
            BranchType::At,
            BranchType::Tcc,
            BranchType::Saga,
            BranchType::Xa,
        ] {
            assert_eq!(branch_type_from_api(branch_type_to_api(t)), t);
        }
    }
}
