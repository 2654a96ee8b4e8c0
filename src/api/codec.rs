//! The encoding of the server functions that feed the pages' resources. The same wire format as
//! server_fn's `Json`, but decoded from text with `serde_json::from_str`, as leptos decodes the
//! same types from the page's hydration data: the wasm then holds one JSON deserializer per type
//! instead of two (one per reader type), a large share of its code.

use leptos::server::codee::{Decoder, Encoder};
use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct JsonTextEncoding;

impl ContentType for JsonTextEncoding {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonTextEncoding {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonTextEncoding {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        serde_json::from_str(text)
    }
}

/// Answers as JSON, decoded from text.
pub type JsonText = Post<JsonTextEncoding>;

/// What the server drew into the page itself (the charts' SVG) and need not send a second time in
/// the page's hydration data.
pub trait DrawnInPage: Clone {
    /// Each chart's SVG, to be emptied in the hydration data (an empty string, not None, so that
    /// the browser renders the same elements).
    fn drawings(&mut self) -> impl Iterator<Item = &mut String>;
}

/// The encoding of a page's resource in the hydration data: JSON, as leptos's default, minus the
/// server-drawn SVG. The browser keeps the SVG that is already in the HTML, because an element's
/// `inner_html` is not rewritten when it is hydrated; a refresh fetches the whole value (with its
/// SVG) through the server function. Each chart would otherwise travel twice in the first load.
pub struct LeanHydration;

impl<T: DrawnInPage + Serialize, E: Serialize + 'static> Encoder<Result<T, E>> for LeanHydration {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &Result<T, E>) -> Result<String, Self::Error> {
        let lean: Result<T, &E> = match val {
            Ok(v) => {
                let mut lean = v.clone();
                lean.drawings().for_each(String::clear);
                Ok(lean)
            }
            Err(e) => Err(e),
        };
        serde_json::to_string(&lean)
    }
}

impl<T: DeserializeOwned + 'static> Decoder<T> for LeanHydration {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, Self::Error> {
        serde_json::from_str(val)
    }
}
