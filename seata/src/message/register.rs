//! Registration messages (spec §4.3–§4.4).

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::result::{read_result_code, write_result_code};
use super::{Body, BodyContext};
use crate::dialect::{MsgLength, SdkVersion};
use crate::enums::ResultCode;
use crate::error::BodyError;
use crate::wire::{Reader, put_str16, put_str32};

/// RegisterTMRequest (101), and the identity part of the RM registrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The client's SDK version (never empty: a Java TC ignores an RM registration without it).
    pub version: String,
    /// The application.
    pub application_id: String,
    /// The transaction service group ("vgroup").
    pub transaction_service_group: String,
    /// `key=value\n` lines (Java TMs send `vgroup=` and `ip=`, and auth keys in 2.x).
    pub extra_data: String,
}

impl RegisterRequest {
    /// The SDK version, if it parses.
    pub fn sdk_version(&self) -> Option<SdkVersion> {
        SdkVersion::parse(&self.version)
    }

    /// The value of `key` in `extraData`.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra_data
            .split('\n')
            .filter_map(|line| line.split_once('='))
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

impl Body for RegisterRequest {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            version: r.str16("version")?,
            application_id: r.str16("applicationId")?,
            transaction_service_group: r.str16("transactionServiceGroup")?,
            extra_data: r.str16("extraData")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        put_str16(dst, &self.version);
        put_str16(dst, &self.application_id);
        put_str16(dst, &self.transaction_service_group);
        put_str16(dst, &self.extra_data);
        Ok(())
    }
}

/// RegisterRMRequest (103) and UnregisterRMRequest (105).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRmRequest {
    /// Who registers.
    #[serde(flatten)]
    pub identity: RegisterRequest,
    /// Comma-separated resource ids.
    pub resource_ids: String,
}

impl RegisterRmRequest {
    /// The resource ids, without empty entries.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.resource_ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

impl Body for RegisterRmRequest {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            identity: RegisterRequest::read(r, ctx)?,
            resource_ids: r.str32("resourceIds")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        self.identity.write(dst, ctx)?;
        put_str32(dst, &self.resource_ids);
        Ok(())
    }
}

/// RegisterTMResponse (102) and RegisterRMResponse (104). Protocol version 1 carries only
/// `identified` and `version`; version 2 puts a result header in front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The version-2 result code; `None` on version 1, where it follows `identified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<ResultCode>,
    /// Why the registration was refused (version 2 only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    /// Whether the registration was accepted.
    pub identified: bool,
    /// The server's version.
    pub version: String,
}

impl RegisterResponse {
    /// An accepting (or refusing) answer from a server of `version`.
    pub fn new(identified: bool, version: impl Into<String>) -> Self {
        Self {
            result_code: None,
            msg: String::new(),
            identified,
            version: version.into(),
        }
    }
}

impl Body for RegisterResponse {
    fn read(r: &mut Reader<'_>, ctx: &BodyContext) -> Result<Self, BodyError> {
        let (result_code, msg) = match ctx.protocol_version {
            1 => (None, String::new()),
            _ => {
                let (code, msg) = read_result_code(r, MsgLength::I16)?;
                (Some(code), msg)
            }
        };
        Ok(Self {
            result_code,
            msg,
            identified: r.bool8("identified")?,
            version: r.str16("version")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, ctx: &BodyContext) -> Result<(), BodyError> {
        if ctx.protocol_version != 1 {
            let in_step = if self.identified {
                ResultCode::Success
            } else {
                ResultCode::Failed
            };
            write_result_code(
                dst,
                self.result_code.unwrap_or(in_step),
                &self.msg,
                MsgLength::I16,
            );
        }
        dst.put_u8(u8::from(self.identified));
        put_str16(dst, &self.version);
        Ok(())
    }
}

/// UnregisterRMResponse (106): the version-1 layout on every protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterRmResponse {
    /// Whether the resources were withdrawn.
    pub identified: bool,
    /// The server's version.
    pub version: String,
}

impl Body for UnregisterRmResponse {
    fn read(r: &mut Reader<'_>, _: &BodyContext) -> Result<Self, BodyError> {
        Ok(Self {
            identified: r.bool8("identified")?,
            version: r.str16("version")?,
        })
    }

    fn write(&self, dst: &mut BytesMut, _: &BodyContext) -> Result<(), BodyError> {
        dst.put_u8(u8::from(self.identified));
        put_str16(dst, &self.version);
        Ok(())
    }
}
