//! From the index to the plugin ABI's frame view (`odock_index_t`,
//! `odock_message_t`): the spans become views into the same body, still
//! without a copy of its bytes.

use odock_plugin_abi::Role;
use odock_plugin_abi::view::{Index, Message};

use super::{FrameIndex, MAX_MESSAGES, McpMethod, Span};

/// Room for the ABI views of every message an index holds: the system
/// prompt first, then [`MAX_MESSAGES`]. A worker keeps one per frame slot.
pub type AbiMessages<'a> = [Message<'a>; MAX_MESSAGES + 1];

fn view(body: &[u8], span: Option<Span>) -> &[u8] {
    span.map_or(&[][..], |s| s.get(body))
}

impl FrameIndex {
    /// An empty [`AbiMessages`] array to fill with [`Self::abi_messages`].
    pub const fn abi_messages_buffer<'a>() -> AbiMessages<'a> {
        [Message::new(Role::Other, &[], &[]); MAX_MESSAGES + 1]
    }

    /// Writes the ABI message views of a request's index into `out` and
    /// returns how many: the system prompt (Anthropic `system`, Responses
    /// `instructions`) as a system message whose role name is its key, then
    /// each message. Content views are the raw JSON values, as the header
    /// says. An invalid index has none.
    ///
    /// # Panics
    /// When the spans lie outside `body`: the index was built from other
    /// bytes.
    pub fn abi_messages<'a>(&self, body: &'a [u8], out: &mut AbiMessages<'a>) -> usize {
        let all = self.system.iter().chain(self.messages());
        let mut n = 0;
        for (slot, m) in out.iter_mut().zip(all) {
            *slot = Message::new(
                m.role,
                view(body, m.role_name_span()),
                view(body, m.content.map(|c| c.span)),
            );
            n += 1;
        }
        n
    }

    /// The ABI's `odock_index_t` of a request's index, with `messages` from
    /// [`Self::abi_messages`]. `mcp_method` is the method string's raw
    /// contents; `tool_arguments` is the raw object of a `tools/call`
    /// (the ABI has no place for the other calls of a batch: they are not
    /// shown, and a batch shows no method).
    ///
    /// # Panics
    /// As [`Self::abi_messages`].
    pub fn abi_index<'a>(&self, body: &'a [u8], messages: &'a [Message<'a>]) -> Index<'a> {
        let mcp = self.mcp();
        Index {
            stream: self.stream,
            invalid: !self.valid(),
            messages,
            mcp_method: view(body, mcp.and_then(|c| c.method).map(|m| m.span)),
            tool_arguments: view(
                body,
                mcp.filter(|c| c.kind == McpMethod::ToolsCall)
                    .and_then(|c| c.arguments)
                    .map(|a| a.span),
            ),
        }
    }
}
