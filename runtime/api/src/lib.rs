//! The services warden's sandbox core reaches through traits, and the types
//! that cross them: [`llm::Models`] answers completions, [`memory::Memories`]
//! stores and searches memories. `warden-core` holds `Arc<dyn …>` of each and
//! keeps what is its own (the grant checks, the WIT conversions);
//! `warden-llm` and `warden-memory` implement them. This crate depends on
//! serde and thiserror only, so a crate that needs the shapes does not
//! compile a model runtime or a vector database.
//!
//! ```
//! use warden_api::llm::{Caller, ChatRequest, Completion, LlmError, Message, Models, Role};
//! use warden_api::BoxFuture;
//!
//! /// A model that always answers "ok".
//! struct Fixed;
//!
//! impl Models for Fixed {
//!     fn complete<'a>(
//!         &'a self,
//!         _request: &'a ChatRequest,
//!         _caller: &'a Caller,
//!     ) -> BoxFuture<'a, Result<Completion, LlmError>> {
//!         Box::pin(async { Ok(Completion::text("ok", "test", "ok-1")) })
//!     }
//! }
//!
//! let request = ChatRequest {
//!     messages: vec![Message::new(Role::User, "hi")],
//!     ..ChatRequest::default()
//! };
//! let answer = block_on(Fixed.complete(&request, &Caller::default()));
//! assert_eq!(answer.unwrap().text, "ok");
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
//! #     }
//! # }
//! ```

pub mod budget;
pub mod llm;
pub mod memory;

use std::future::Future;
use std::pin::Pin;

/// A boxed future that can cross threads: what the object-safe service
/// traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
