//! Our HTTP/1.x codec: heads (`head`) and body framing (`framing`). Pure: no sockets
//! here; `conn` does the reading and writing. Heads are parsed with `httparse` and kept
//! as raw bytes with positions, bodies are relayed verbatim, so the bytes an upstream
//! receives are the bytes the client sent, minus what `rewrite` deliberately changes.

pub mod framing;
pub mod head;

pub use framing::{request_body, response_body, Chunked, ReqBody, RespBody};
pub use head::{
    list_has, parse_request, parse_response, Head, HeadError, RequestHead, ResponseHead, Version,
    MAX_HEAD,
};
