//! Policy: which plugins run, in what order, with which grants, for a frame.
//!
//! Control compiles its state (plugins, scopes, bindings) into a
//! [`PolicySpec`] and pushes it; the dataplane compiles the spec once into a
//! [`CompiledPolicy`] and swaps it in whole (see `runtime::worker`).
//!
//! # Lookup without a scan
//!
//! A binding's [`Scope`] names a value or "any" on each of six dimensions
//! (tenant, virtual key, environment, model, MCP server, MCP tool). For each
//! gate, compilation sorts the bindings that join the gate by (priority,
//! plugin name, binding id) and numbers them; bit `i` of a bit set stands for
//! the `i`-th binding of that order. For each dimension it keeps a hash map
//! from value to the bit set of bindings naming exactly that value, plus the
//! bit set of bindings that accept any value. A frame's chain is then
//!
//! ```text
//! enabled ∧ ⋀ over dimensions (exact[value] ∨ any)
//! ```
//!
//! — six hash lookups and a few word-wide ANDs — and iterating the set bits
//! yields the chain already in order. Nothing on that path allocates: the
//! caller lends a scratch buffer of [`CompiledPolicy::words`] words.
//!
//! A frame without a value on a dimension (no MCP tool for an LLM request)
//! matches only bindings that accept any value there.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use odock_plugin_abi::Gate;

pub use crate::plugin::{FailureMode, Grant};

/// The dimensions a scope matches on, in lookup order.
const DIMENSIONS: usize = 6;

/// Which frames a binding applies to: `None` on a dimension means any value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The caller's tenant.
    pub tenant: Option<String>,
    /// The virtual API key's id.
    pub virtual_key: Option<String>,
    /// The deployment environment (for example `prod`).
    pub environment: Option<String>,
    /// The LLM model asked for.
    pub model: Option<String>,
    /// The MCP server called.
    pub mcp_server: Option<String>,
    /// The MCP tool called.
    pub mcp_tool: Option<String>,
}

impl Scope {
    fn dimensions(&self) -> [Option<&str>; DIMENSIONS] {
        [
            self.tenant.as_deref(),
            self.virtual_key.as_deref(),
            self.environment.as_deref(),
            self.model.as_deref(),
            self.mcp_server.as_deref(),
            self.mcp_tool.as_deref(),
        ]
    }
}

/// One plugin bound to one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// The plugin's registered name.
    pub plugin: String,
    /// Where it applies.
    pub scope: Scope,
    /// Whether it runs at all.
    pub enabled: bool,
    /// Priority per gate (lower runs first); `None`: not on that gate.
    /// Indexed by [`gate_index`].
    pub priority: [Option<i32>; 3],
    /// What it may do.
    pub grant: Grant,
    /// Its configuration, as control validated it.
    pub config: Vec<u8>,
    /// What its failures mean.
    pub failure_mode: FailureMode,
    /// How long one call may take.
    pub time_budget: Duration,
}

/// A whole policy, as control pushes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// Control's version number of its state; rises with every change.
    pub version: u64,
    /// The bindings.
    pub bindings: Vec<BindingSpec>,
}

/// The position of a gate in per-gate arrays.
pub const fn gate_index(gate: Gate) -> usize {
    match gate {
        Gate::Request => 0,
        Gate::Response => 1,
        Gate::Complete => 2,
    }
}

/// The identity and target of a frame, as the scope lookup sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameKey<'a> {
    /// The caller's tenant.
    pub tenant: Option<&'a str>,
    /// The virtual API key's id.
    pub virtual_key: Option<&'a str>,
    /// The deployment environment.
    pub environment: Option<&'a str>,
    /// The model asked for.
    pub model: Option<&'a str>,
    /// The MCP server called.
    pub mcp_server: Option<&'a str>,
    /// The MCP tool called.
    pub mcp_tool: Option<&'a str>,
}

impl<'a> FrameKey<'a> {
    fn dimensions(&self) -> [Option<&'a str>; DIMENSIONS] {
        [
            self.tenant,
            self.virtual_key,
            self.environment,
            self.model,
            self.mcp_server,
            self.mcp_tool,
        ]
    }
}

/// A policy compiled for lookup. Immutable; swapped whole.
pub struct CompiledPolicy {
    version: u64,
    bindings: Vec<BindingSpec>,
    gates: [GateTable; 3],
    words: usize,
}

struct GateTable {
    /// Binding ids in chain order; bit `i` stands for `order[i]`.
    order: Vec<u32>,
    /// Bindings that are enabled and not disabled by their failure mode.
    enabled: Box<[u64]>,
    dimensions: [Dimension; DIMENSIONS],
}

struct Dimension {
    exact: HashMap<Box<str>, Box<[u64]>, BuildHasherDefault<FxHasher>>,
    any: Box<[u64]>,
}

/// Why a policy does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A binding names no plugin.
    EmptyPluginName {
        /// The binding's position in the spec.
        binding: usize,
    },
    /// A binding's time budget is zero.
    ZeroTimeBudget {
        /// The binding's position in the spec.
        binding: usize,
        /// Its plugin.
        plugin: String,
    },
    /// A binding joins no gate.
    NoGate {
        /// The binding's position in the spec.
        binding: usize,
        /// Its plugin.
        plugin: String,
    },
    /// A scope names an empty value (use "any" instead).
    EmptyScopeValue {
        /// The binding's position in the spec.
        binding: usize,
        /// The dimension.
        field: &'static str,
    },
}

const DIMENSION_NAMES: [&str; DIMENSIONS] = [
    "tenant",
    "virtual_key",
    "environment",
    "model",
    "mcp_server",
    "mcp_tool",
];

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::EmptyPluginName { binding } => {
                write!(f, "bindings[{binding}].plugin is empty")
            }
            PolicyError::ZeroTimeBudget { binding, plugin } => {
                write!(
                    f,
                    "bindings[{binding}] ({plugin}): time_budget must be more than zero"
                )
            }
            PolicyError::NoGate { binding, plugin } => {
                write!(
                    f,
                    "bindings[{binding}] ({plugin}): joins no gate (no priority set)"
                )
            }
            PolicyError::EmptyScopeValue { binding, field } => {
                write!(
                    f,
                    "bindings[{binding}].scope.{field} is empty: leave it out to match any value"
                )
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl CompiledPolicy {
    /// Compiles a spec.
    ///
    /// # Errors
    /// [`PolicyError`] naming the binding and field that is wrong.
    pub fn compile(spec: PolicySpec) -> Result<CompiledPolicy, PolicyError> {
        for (i, b) in spec.bindings.iter().enumerate() {
            if b.plugin.is_empty() {
                return Err(PolicyError::EmptyPluginName { binding: i });
            }
            if b.time_budget.is_zero() {
                return Err(PolicyError::ZeroTimeBudget {
                    binding: i,
                    plugin: b.plugin.clone(),
                });
            }
            if b.priority.iter().all(Option::is_none) {
                return Err(PolicyError::NoGate {
                    binding: i,
                    plugin: b.plugin.clone(),
                });
            }
            if let Some(d) = b
                .scope
                .dimensions()
                .iter()
                .position(|v| v.is_some_and(str::is_empty))
            {
                return Err(PolicyError::EmptyScopeValue {
                    binding: i,
                    field: DIMENSION_NAMES[d],
                });
            }
        }
        let words = spec.bindings.len().div_ceil(64).max(1);
        let gates = [Gate::Request, Gate::Response, Gate::Complete].map(|gate| {
            let g = gate_index(gate);
            let mut order: Vec<u32> = (0..spec.bindings.len() as u32)
                .filter(|&i| spec.bindings[i as usize].priority[g].is_some())
                .collect();
            order.sort_by(|&a, &b| {
                let (ba, bb) = (&spec.bindings[a as usize], &spec.bindings[b as usize]);
                (ba.priority[g], &ba.plugin, a).cmp(&(bb.priority[g], &bb.plugin, b))
            });
            let mut enabled = vec![0u64; words].into_boxed_slice();
            let mut dimensions: [Dimension; DIMENSIONS] = std::array::from_fn(|_| Dimension {
                exact: HashMap::default(),
                any: vec![0u64; words].into_boxed_slice(),
            });
            for (bit, &id) in order.iter().enumerate() {
                let b = &spec.bindings[id as usize];
                if b.enabled && b.failure_mode != FailureMode::Disabled {
                    set(&mut enabled, bit);
                }
                for (d, value) in b.scope.dimensions().into_iter().enumerate() {
                    match value {
                        None => set(&mut dimensions[d].any, bit),
                        Some(v) => set(
                            dimensions[d]
                                .exact
                                .entry(v.into())
                                .or_insert_with(|| vec![0u64; words].into_boxed_slice()),
                            bit,
                        ),
                    }
                }
            }
            GateTable {
                order,
                enabled,
                dimensions,
            }
        });
        Ok(CompiledPolicy {
            version: spec.version,
            bindings: spec.bindings,
            gates,
            words,
        })
    }

    /// Control's version of the state this policy was compiled from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The bindings, indexed by binding id.
    pub fn bindings(&self) -> &[BindingSpec] {
        &self.bindings
    }

    /// Whether some binding of `gate` names a model or an MCP tool in its
    /// scope: then a frame's chain depends on its body (where the model and
    /// the tool are read from), else it can be found without parsing it.
    pub fn scopes_on_body_keys(&self, gate: Gate) -> bool {
        let table = &self.gates[gate_index(gate)];
        // Dimensions 3 and 5: model and MCP tool (see `Scope::dimensions`).
        !table.dimensions[3].exact.is_empty() || !table.dimensions[5].exact.is_empty()
    }

    /// How many `u64` words of scratch a lookup needs.
    pub fn words(&self) -> usize {
        self.words
    }

    /// The chain of `gate` for a frame: the binding ids, in order. `scratch`
    /// must hold at least [`Self::words`] words; nothing is allocated.
    ///
    /// # Panics
    /// When `scratch` is shorter than [`Self::words`].
    pub fn chain<'s>(
        &'s self,
        gate: Gate,
        key: &FrameKey<'_>,
        scratch: &'s mut [u64],
    ) -> Chain<'s> {
        let table = &self.gates[gate_index(gate)];
        let bits = &mut scratch[..self.words];
        bits.copy_from_slice(&table.enabled);
        for (d, value) in key.dimensions().into_iter().enumerate() {
            let dim = &table.dimensions[d];
            let exact = value.and_then(|v| dim.exact.get(v));
            for (w, word) in bits.iter_mut().enumerate() {
                *word &= dim.any[w] | exact.map_or(0, |e| e[w]);
            }
        }
        Chain {
            order: &table.order,
            bits,
            word: 0,
        }
    }
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("version", &self.version)
            .field("bindings", &self.bindings.len())
            .finish_non_exhaustive()
    }
}

fn set(bits: &mut [u64], bit: usize) {
    bits[bit / 64] |= 1 << (bit % 64);
}

/// The binding ids of one chain, in order (an iterator over a bit set).
pub struct Chain<'s> {
    order: &'s [u32],
    bits: &'s mut [u64],
    word: usize,
}

impl Iterator for Chain<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        while self.word < self.bits.len() {
            let w = self.bits[self.word];
            if w != 0 {
                let bit = w.trailing_zeros() as usize;
                self.bits[self.word] = w & (w - 1);
                return Some(self.order[self.word * 64 + bit]);
            }
            self.word += 1;
        }
        None
    }
}

/// The multiply-rotate hash rustc uses for short keys: fast, not DoS-proof,
/// which is fine for keys that come from the operator's own policy.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(plugin: &str, request: Option<i32>, scope: Scope) -> BindingSpec {
        BindingSpec {
            plugin: plugin.into(),
            scope,
            enabled: true,
            priority: [request, None, None],
            grant: Grant::default(),
            config: Vec::new(),
            failure_mode: FailureMode::Enforce,
            time_budget: Duration::from_millis(5),
        }
    }

    fn names(policy: &CompiledPolicy, gate: Gate, key: &FrameKey<'_>) -> Vec<String> {
        let mut scratch = vec![0; policy.words()];
        policy
            .chain(gate, key, &mut scratch)
            .map(|id| policy.bindings()[id as usize].plugin.clone())
            .collect()
    }

    fn tenant(t: &str) -> Scope {
        Scope {
            tenant: Some(t.into()),
            ..Scope::default()
        }
    }

    #[test]
    fn chains_are_ordered_by_priority_then_name_and_scoped() {
        let spec = PolicySpec {
            version: 7,
            bindings: vec![
                binding("zeta", Some(10), Scope::default()),
                binding("alpha", Some(10), Scope::default()),
                binding("first", Some(-5), tenant("acme")),
                binding("other-tenant", Some(0), tenant("globex")),
                binding(
                    "gpt-only",
                    Some(20),
                    Scope {
                        model: Some("gpt-4o".into()),
                        environment: Some("prod".into()),
                        ..Scope::default()
                    },
                ),
            ],
        };
        let policy = CompiledPolicy::compile(spec).unwrap();
        assert_eq!(policy.version(), 7);
        let acme = FrameKey {
            tenant: Some("acme"),
            environment: Some("prod"),
            model: Some("gpt-4o"),
            ..FrameKey::default()
        };
        assert_eq!(
            names(&policy, Gate::Request, &acme),
            ["first", "alpha", "zeta", "gpt-only"]
        );
        let staging = FrameKey {
            environment: Some("staging"),
            ..acme
        };
        assert_eq!(
            names(&policy, Gate::Request, &staging),
            ["first", "alpha", "zeta"]
        );
        // No tenant on the frame: only bindings for any tenant.
        let anonymous = FrameKey::default();
        assert_eq!(names(&policy, Gate::Request, &anonymous), ["alpha", "zeta"]);
        // No binding joins the response gate.
        assert!(names(&policy, Gate::Response, &acme).is_empty());
    }

    #[test]
    fn disabled_bindings_do_not_run_and_gates_order_independently() {
        let mut a = binding("a", Some(1), Scope::default());
        a.priority[gate_index(Gate::Response)] = Some(9);
        let mut b = binding("b", Some(2), Scope::default());
        b.priority[gate_index(Gate::Response)] = Some(1);
        let mut off = binding("off", Some(0), Scope::default());
        off.enabled = false;
        let mut shadow_off = binding("disabled-mode", Some(0), Scope::default());
        shadow_off.failure_mode = FailureMode::Disabled;
        let policy = CompiledPolicy::compile(PolicySpec {
            version: 1,
            bindings: vec![a, b, off, shadow_off],
        })
        .unwrap();
        let key = FrameKey::default();
        assert_eq!(names(&policy, Gate::Request, &key), ["a", "b"]);
        assert_eq!(names(&policy, Gate::Response, &key), ["b", "a"]);
    }

    #[test]
    fn more_than_64_bindings_span_words() {
        let bindings: Vec<_> = (0..150)
            .map(|i| {
                binding(
                    &format!("p{i:03}"),
                    Some(150 - i),
                    tenant(if i % 3 == 0 { "t" } else { "u" }),
                )
            })
            .collect();
        let policy = CompiledPolicy::compile(PolicySpec {
            version: 1,
            bindings,
        })
        .unwrap();
        assert_eq!(policy.words(), 3);
        let got = names(
            &policy,
            Gate::Request,
            &FrameKey {
                tenant: Some("t"),
                ..FrameKey::default()
            },
        );
        let want: Vec<String> = (0..150)
            .rev()
            .filter(|i| i % 3 == 0)
            .map(|i| format!("p{i:03}"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_specs_name_the_binding_and_field() {
        let mut empty = binding("x", Some(0), Scope::default());
        empty.scope.model = Some(String::new());
        let err = CompiledPolicy::compile(PolicySpec {
            version: 1,
            bindings: vec![binding("ok", Some(0), Scope::default()), empty],
        })
        .unwrap_err();
        assert_eq!(
            err,
            PolicyError::EmptyScopeValue {
                binding: 1,
                field: "model"
            }
        );
        assert_eq!(
            err.to_string(),
            "bindings[1].scope.model is empty: leave it out to match any value"
        );
        let mut zero = binding("z", Some(0), Scope::default());
        zero.time_budget = Duration::ZERO;
        assert!(matches!(
            CompiledPolicy::compile(PolicySpec {
                version: 1,
                bindings: vec![zero]
            }),
            Err(PolicyError::ZeroTimeBudget { binding: 0, .. })
        ));
        let nogate = binding("n", None, Scope::default());
        assert!(matches!(
            CompiledPolicy::compile(PolicySpec {
                version: 1,
                bindings: vec![nogate]
            }),
            Err(PolicyError::NoGate { .. })
        ));
    }

    #[test]
    fn a_policy_says_when_chains_depend_on_the_body() {
        let plain = CompiledPolicy::compile(PolicySpec {
            version: 1,
            bindings: vec![binding("a", Some(0), tenant("t"))],
        })
        .unwrap();
        assert!(!plain.scopes_on_body_keys(Gate::Request));
        let by_model = binding(
            "m",
            Some(0),
            Scope {
                model: Some("gpt-4o".into()),
                ..Scope::default()
            },
        );
        let mut by_tool = binding(
            "t",
            None,
            Scope {
                mcp_tool: Some("rm".into()),
                ..Scope::default()
            },
        );
        by_tool.priority[1] = Some(0);
        let p = CompiledPolicy::compile(PolicySpec {
            version: 1,
            bindings: vec![by_model, by_tool],
        })
        .unwrap();
        assert!(
            p.scopes_on_body_keys(Gate::Request),
            "model scope at the request gate"
        );
        assert!(
            p.scopes_on_body_keys(Gate::Response),
            "tool scope at the response gate"
        );
        assert!(!p.scopes_on_body_keys(Gate::Complete));
    }

    #[test]
    fn failure_mode_names_round_trip() {
        for m in [
            FailureMode::Enforce,
            FailureMode::EnforceIgnoreError,
            FailureMode::Permissive,
            FailureMode::Disabled,
        ] {
            assert_eq!(FailureMode::from_name(m.name()), Some(m));
        }
        assert_eq!(FailureMode::from_name("fail_open"), None);
    }

    mod model {
        use proptest::prelude::*;

        use super::*;

        fn value() -> impl Strategy<Value = Option<String>> {
            prop_oneof![Just(None), (0..3u8).prop_map(|v| Some(format!("v{v}")))]
        }

        fn scope() -> impl Strategy<Value = Scope> {
            (value(), value(), value(), value(), value(), value()).prop_map(
                |(t, k, e, m, s, tool)| Scope {
                    tenant: t,
                    virtual_key: k,
                    environment: e,
                    model: m,
                    mcp_server: s,
                    mcp_tool: tool,
                },
            )
        }

        fn spec_binding() -> impl Strategy<Value = BindingSpec> {
            (
                0..4u8,
                proptest::option::of(-3..3i32),
                proptest::option::of(-3..3i32),
                any::<bool>(),
                scope(),
            )
                .prop_map(|(p, req, resp, enabled, scope)| {
                    let mut b = binding(&format!("p{p}"), req.or(Some(0)), scope);
                    b.priority[1] = resp;
                    b.enabled = enabled;
                    b
                })
        }

        fn matches(scope: &Scope, key: &FrameKey<'_>) -> bool {
            scope
                .dimensions()
                .iter()
                .zip(key.dimensions())
                .all(|(s, k)| s.is_none() || *s == k)
        }

        proptest! {
            /// The compiled lookup gives exactly what a scan over every
            /// binding, filtered and sorted, gives.
            #[test]
            fn lookup_equals_a_scan(bindings in proptest::collection::vec(spec_binding(), 0..90), keys in proptest::collection::vec(scope(), 1..8)) {
                let policy = CompiledPolicy::compile(PolicySpec { version: 1, bindings: bindings.clone() }).unwrap();
                let mut scratch = vec![0; policy.words()];
                for key_scope in &keys {
                    let key = FrameKey {
                        tenant: key_scope.tenant.as_deref(),
                        virtual_key: key_scope.virtual_key.as_deref(),
                        environment: key_scope.environment.as_deref(),
                        model: key_scope.model.as_deref(),
                        mcp_server: key_scope.mcp_server.as_deref(),
                        mcp_tool: key_scope.mcp_tool.as_deref(),
                    };
                    for gate in [Gate::Request, Gate::Response] {
                        let g = gate_index(gate);
                        let mut want: Vec<u32> = (0..bindings.len() as u32)
                            .filter(|&i| {
                                let b = &bindings[i as usize];
                                b.enabled && b.priority[g].is_some() && matches(&b.scope, &key)
                            })
                            .collect();
                        want.sort_by_key(|&i| (bindings[i as usize].priority[g], bindings[i as usize].plugin.clone(), i));
                        let got: Vec<u32> = policy.chain(gate, &key, &mut scratch).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }
    }
}
