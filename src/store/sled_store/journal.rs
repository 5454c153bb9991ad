//! The CA journal: the authority records rotation state is rebuilt from.

use super::codec::encode;
use super::SledStore;
use crate::store::common::{check_authority, put_authority_span};
use crate::store::{AuthorityRecord, StoreError};

impl SledStore {
    pub(super) fn put_authority_impl(&self, record: &AuthorityRecord) -> Result<(), StoreError> {
        let _span = put_authority_span(record);
        check_authority(record)?;
        let bytes = encode("authority", &record.id, record)?;
        self.authorities
            .insert(record.id.as_bytes(), bytes)
            .map_err(StoreError::sled("write an authority record"))?;
        self.flush("flush an authority record")
    }
}
