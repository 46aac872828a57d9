//! `txmesh frame decode|encode`: one Seata frame as hex ⇄ the JSON form of
//! [`txmesh_seata::Frame`], such that `decode X | encode` prints exactly `X` again.

use std::io::{ErrorKind, Read, Write};
use std::ops::Range;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use txmesh_seata::compress::decompress;
use txmesh_seata::{
    BodyContext, DEFAULT_MAX_FRAME_LEN, Dialect, ExceptionCodeNumbering, Frame, Message, MsgLength,
    RawFrame,
};

/// The `frame` subcommands.
#[derive(Debug, Subcommand)]
pub enum FrameCommand {
    /// Decode one frame given in hex and print it as one JSON object.
    Decode(DecodeArgs),
    /// Read a frame's JSON (as `decode` prints it) from stdin and print the frame in hex.
    Encode,
}

impl FrameCommand {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            FrameCommand::Decode(args) => decode(&args),
            FrameCommand::Encode => encode(),
        }
    }
}

/// Options of `frame decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The frame in hex, or `-` to read it from stdin. Whitespace, `0x` prefixes and `:`
    /// between bytes are ignored.
    hex: String,

    /// Print indented JSON instead of a single line.
    #[arg(long)]
    pretty: bool,

    /// The TransactionExceptionCode numbering of the peer that wrote the frame.
    #[arg(long, value_enum, default_value = "2.0")]
    numbering: Numbering,

    /// Decode as seata-go writes (1.5 numbering, one-byte failure messages).
    #[arg(long, conflicts_with = "numbering")]
    seata_go: bool,
}

impl DecodeArgs {
    fn dialect(&self) -> Dialect {
        if self.seata_go {
            Dialect::SEATA_GO
        } else {
            Dialect {
                exception_codes: self.numbering.into(),
                ..Dialect::CURRENT
            }
        }
    }
}

/// The `--numbering` choices, named as the Seata releases that introduced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Numbering {
    /// Java 1.0–1.4.
    #[value(name = "1.0")]
    V1_0,
    /// Java 1.5–1.6 and seata-go.
    #[value(name = "1.5")]
    V1_5,
    /// Java 1.7–1.8.
    #[value(name = "1.7")]
    V1_7,
    /// Java 2.0 and later.
    #[value(name = "2.0")]
    V2_0,
}

impl From<Numbering> for ExceptionCodeNumbering {
    fn from(numbering: Numbering) -> Self {
        match numbering {
            Numbering::V1_0 => Self::V1_0,
            Numbering::V1_5 => Self::V1_5,
            Numbering::V1_7 => Self::V1_7,
            Numbering::V2_0 => Self::V2_0,
        }
    }
}

fn decode(args: &DecodeArgs) -> anyhow::Result<()> {
    let bytes = parse_hex(&hex_input(&args.hex)?)?;
    let json = FrameJson::decode(&bytes, &args.dialect())?;
    let text = if args.pretty {
        serde_json::to_string_pretty(&json)
    } else {
        serde_json::to_string(&json)
    }?;
    print_line(&text)
}

fn encode() -> anyhow::Result<()> {
    let json = FrameJson::parse(&read_stdin()?)?;
    print_line(&hex::encode(json.encode()?))
}

/// Offsets of the header's length fields (spec §2.1).
const FULL_LENGTH: Range<usize> = 3..7;
const HEAD_LENGTH: Range<usize> = 7..9;

/// The JSON form of one frame: the serde form of [`Frame`], plus the few fields that exact
/// re-encoding needs and some that only inform (ignored by `encode`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameJson {
    /// Informational: bytes in the whole frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    full_length: Option<usize>,
    /// Informational: bytes in the header and head map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_length: Option<usize>,
    #[serde(flatten)]
    frame: Frame,
    /// Informational: the body's type code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    type_code: Option<i16>,
    /// The `msg` layout of the four short failure answers, when it is seata-go's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    msg_length: Option<MsgLength>,
    /// The exception-code numbering, when not the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exception_codes: Option<ExceptionCodeNumbering>,
    /// The body bytes as received, in hex, when encoding `body` would not reproduce them
    /// (another compressor implementation, bytes a heartbeat carries…). Kept by `encode` as
    /// long as they still decode to `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wire_body: Option<String>,
}

impl FrameJson {
    /// Decodes one whole frame.
    fn decode(bytes: &[u8], dialect: &Dialect) -> anyhow::Result<Self> {
        let raw = RawFrame::parse(bytes, DEFAULT_MAX_FRAME_LEN)?;
        let msg_length = raw
            .message_any_msg_length(dialect)?
            .map(|(_, msg_length)| msg_length);
        let wire_body = raw.body.clone();
        // `into_frame` decodes the body once more; only the call above tells the layout.
        let frame = raw.into_frame(dialect)?;
        let mut json = Self {
            full_length: Some(bytes.len()),
            head_length: Some(bytes.len() - wire_body.len()),
            type_code: frame.body.as_ref().map(Message::type_code),
            msg_length: msg_length.filter(|layout| *layout != Dialect::CURRENT.branch_msg_length),
            exception_codes: Some(dialect.exception_codes)
                .filter(|numbering| *numbering != Dialect::CURRENT.exception_codes),
            frame,
            wire_body: None,
        };
        // The received body goes in only where encoding `body` would not give it back.
        if json.encode().ok().as_deref() != Some(bytes) {
            json.wire_body = Some(hex::encode(wire_body));
        }
        Ok(json)
    }

    /// Parses the JSON, refusing fields it does not know.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let given: Value = serde_json::from_str(text).context("invalid JSON")?;
        // Parsed from the text rather than from `given`, so errors carry line and column.
        let json: Self = serde_json::from_str(text).context("invalid frame JSON")?;
        let unknown = unknown_fields(&given, &serde_json::to_value(&json)?);
        if !unknown.is_empty() {
            bail!("unknown fields in frame JSON: {}", unknown.join(", "));
        }
        Ok(json)
    }

    /// The dialect the JSON asks for: the current one unless a field says otherwise.
    fn dialect(&self) -> Dialect {
        Dialect {
            exception_codes: self
                .exception_codes
                .unwrap_or(Dialect::CURRENT.exception_codes),
            branch_msg_length: self
                .msg_length
                .unwrap_or(Dialect::CURRENT.branch_msg_length),
            ..Dialect::CURRENT
        }
    }

    /// The frame's bytes.
    fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let dialect = self.dialect();
        let encoded = self
            .frame
            .to_bytes(&dialect)
            .context("cannot encode the frame")?;
        match self.kept_wire_body(&dialect)? {
            Some(wire_body) => replace_body(&encoded, &wire_body),
            None => Ok(encoded.to_vec()),
        }
    }

    /// The `wireBody` bytes, if they still stand for `body`.
    fn kept_wire_body(&self, dialect: &Dialect) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(text) = &self.wire_body else {
            return Ok(None);
        };
        let wire_body = hex::decode(text).context("wireBody is not valid hex")?;
        let keep = match &self.frame.body {
            // Receivers ignore whatever a heartbeat carries.
            None => true,
            Some(body) => self.decode_wire_body(&wire_body, dialect).as_ref() == Some(body),
        };
        if !keep {
            tracing::debug!("wireBody no longer matches body: encoding body afresh");
        }
        Ok(keep.then_some(wire_body))
    }

    /// The message `wire_body` holds, if it holds one.
    fn decode_wire_body(&self, wire_body: &[u8], dialect: &Dialect) -> Option<Message> {
        let plain = decompress(self.frame.compressor, wire_body, DEFAULT_MAX_FRAME_LEN).ok()?;
        let ctx = BodyContext {
            protocol_version: self.frame.version,
            dialect: *dialect,
        };
        Message::decode(&plain, &ctx).ok()
    }
}

/// The encoded frame with its body replaced, and its full length updated.
fn replace_body(encoded: &[u8], body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let head_length = encoded[HEAD_LENGTH]
        .try_into()
        .map(u16::from_be_bytes)
        .expect("the head length field is two bytes");
    let head_length = usize::from(head_length);
    let mut frame = [&encoded[..head_length], body].concat();
    if frame.len() > DEFAULT_MAX_FRAME_LEN {
        bail!(
            "encoded frame of {} bytes exceeds the maximum of {DEFAULT_MAX_FRAME_LEN}",
            frame.len()
        );
    }
    let full_length = frame.len() as u32;
    frame[FULL_LENGTH].copy_from_slice(&full_length.to_be_bytes());
    Ok(frame)
}

/// Paths of the fields of `given` that `parsed` (its re-serialization) lacks: serde skips
/// unknown fields, so a misspelt one would otherwise fall back silently to its default.
fn unknown_fields(given: &Value, parsed: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_unknown_fields(given, parsed, "", &mut found);
    found
}

fn collect_unknown_fields(given: &Value, parsed: &Value, path: &str, found: &mut Vec<String>) {
    match (given, parsed) {
        (Value::Object(given), Value::Object(parsed)) => {
            for (key, value) in given {
                let path = match path {
                    "" => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                match parsed.get(key) {
                    Some(parsed) => collect_unknown_fields(value, parsed, &path, found),
                    // Empty defaults are not serialized back: an explicit one is no typo.
                    None if value.is_null() || value == "" => {}
                    None => found.push(path),
                }
            }
        }
        (Value::Array(given), Value::Array(parsed)) => {
            for (index, (given, parsed)) in given.iter().zip(parsed).enumerate() {
                collect_unknown_fields(given, parsed, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// The HEX argument, or stdin for `-`.
fn hex_input(arg: &str) -> anyhow::Result<String> {
    match arg {
        "-" => read_stdin(),
        _ => Ok(arg.to_owned()),
    }
}

/// Hex digits to bytes, ignoring whitespace, `:` separators and `0x` prefixes.
fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: String = text
        .split(|c: char| c.is_whitespace() || c == ':')
        .map(|group| {
            group
                .strip_prefix("0x")
                .or_else(|| group.strip_prefix("0X"))
                .unwrap_or(group)
        })
        .collect();
    hex::decode(digits).context("invalid hex")
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read stdin")?;
    Ok(text)
}

fn print_line(text: &str) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{text}") {
        // The reader has gone away (`| head`): there is no one left to tell.
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write to stdout"),
    }
}
