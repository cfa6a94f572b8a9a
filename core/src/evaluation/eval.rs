//! A fast path for policy conditions, exact where it answers.
//!
//! Cedar's reference evaluator clones every value it touches, attaches source locations to
//! each intermediate result and checks the stack at every step; deciding a GitLab-sized request
//! spends most of its time there. This module walks the same condition expressions over
//! borrowed values and answers only when it can give Cedar's answer: a boolean that Cedar's
//! `interpret` would also return, without error. On anything else (a type error, a missing
//! attribute or entity, an overflow, an extension type, a partial value, a construct it does
//! not implement) it answers `None`, and the caller runs Cedar's evaluator on the whole
//! condition, which produces the exact value or error. Cedar is deterministic and a condition
//! has no side effects, so "fast answer or Cedar's answer" is always Cedar's answer.
//!
//! Every rule below mirrors `cedar_policy_core::evaluator::Evaluator::partial_interpret` for a
//! concrete request and store; `tests/it/fast_eval.rs` compares the two on generated expressions,
//! entities and contexts, and the conformance corpus compares whole decisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy_core::ast::{
    BinaryOp, Context, Entity, EntityUID, EntityUIDEntry, Expr, ExprKind, Literal, Name,
    PartialValue, RepresentableExtensionValue, Request, Set, SlotId, UnaryOp, Value, ValueKind,
    Var,
};
use cedar_policy_core::entities::{Dereference, Entities};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;

use crate::bundle::entities::StaticEntities;

/// Deeper expressions are left to Cedar, whose evaluator checks the remaining stack.
const MAX_DEPTH: u32 = 48;

/// A value during fast evaluation, borrowed from the request, the store or the policy.
#[derive(Clone, Copy)]
enum V<'a> {
    Bool(bool),
    Long(i64),
    /// A string or an entity uid (never a bool or a long: those are the variants above).
    Lit(&'a Literal),
    Set(&'a Set),
    /// A set literal of the policy whose elements are all literals, not yet made a set: its
    /// elements cannot error, and membership does not depend on order or repeats.
    Elems(&'a [Expr]),
    Record(&'a BTreeMap<SmolStr, Value>),
    Ext(&'a Arc<RepresentableExtensionValue>),
}

impl<'a> V<'a> {
    fn of(value: &'a Value) -> Self {
        match value.value_kind() {
            ValueKind::Lit(lit) => Self::lit(lit),
            ValueKind::Set(set) => V::Set(set),
            ValueKind::Record(record) => V::Record(record),
            ValueKind::ExtensionValue(ext) => V::Ext(ext),
        }
    }

    fn lit(lit: &'a Literal) -> Self {
        match lit {
            Literal::Bool(b) => V::Bool(*b),
            Literal::Long(n) => V::Long(*n),
            Literal::String(_) | Literal::EntityUID(_) => V::Lit(lit),
        }
    }

    fn uid(self) -> Option<&'a EntityUID> {
        match self {
            V::Lit(Literal::EntityUID(uid)) => Some(uid),
            _ => None,
        }
    }

    /// Cedar's `Value` equality: values of different kinds are never equal. `None` for a set
    /// literal, whose equality is a set's (left to Cedar).
    fn equals(self, other: V<'_>) -> Option<bool> {
        Some(match (self, other) {
            (V::Elems(_), _) | (_, V::Elems(_)) => return None,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Long(a), V::Long(b)) => a == b,
            (V::Lit(a), V::Lit(b)) => a == b,
            (V::Set(a), V::Set(b)) => a == b,
            (V::Record(a), V::Record(b)) => a == b,
            (V::Ext(a), V::Ext(b)) => a == b,
            _ => false,
        })
    }

    /// The elements of a set or set literal, each as a value; `None` for anything else.
    fn elements(self) -> Option<Elements<'a>> {
        match self {
            V::Set(set) => Some(Elements::Set(set)),
            V::Elems(elems) => Some(Elements::Literals(elems)),
            _ => None,
        }
    }

    /// This value as Cedar's, for an extension function's argument (records are left to
    /// Cedar).
    fn to_value(self) -> Option<Value> {
        Some(match self {
            V::Bool(b) => Value::from(b),
            V::Long(n) => Value::from(n),
            V::Lit(lit) => Value::new(lit.clone(), None),
            V::Set(set) => Value::new(ValueKind::Set(set.clone()), None),
            V::Ext(ext) => Value::new(ValueKind::ExtensionValue(Arc::clone(ext)), None),
            V::Elems(_) | V::Record(_) => return None,
        })
    }
}

/// The elements of a set value or of a set literal of literals.
#[derive(Clone, Copy)]
enum Elements<'a> {
    Set(&'a Set),
    Literals(&'a [Expr]),
}

impl<'a> Elements<'a> {
    fn for_each(self, mut f: impl FnMut(V<'a>) -> Option<()>) -> Option<()> {
        match self {
            Elements::Set(set) => set.authoritative.iter().try_for_each(|v| f(V::of(v))),
            Elements::Literals(elems) => elems.iter().try_for_each(|e| match e.expr_kind() {
                ExprKind::Lit(lit) => f(V::lit(lit)),
                _ => None,
            }),
        }
    }

    /// Whether `element` is one of these (Cedar's `contains`).
    fn contains(self, element: V<'_>) -> Option<bool> {
        match self {
            Elements::Set(set) => contains(set, element),
            Elements::Literals(_) => {
                let mut found = false;
                self.for_each(|e| {
                    found = found || e.equals(element)?;
                    Some(())
                })?;
                Some(found)
            }
        }
    }

    /// Whether every one of `other` is one of these (Cedar's `containsAll`, with `every`), or
    /// some one is (`containsAny`).
    fn contain(self, other: Elements<'_>, every: bool) -> Option<bool> {
        if let (Elements::Set(x), Elements::Set(y)) = (self, other) {
            return Some(if every {
                y.is_subset(x)
            } else {
                !x.is_disjoint(y)
            });
        }
        let mut result = every;
        other.for_each(|e| {
            result = if every {
                result && self.contains(e)?
            } else {
                result || self.contains(e)?
            };
            Some(())
        })?;
        Some(result)
    }
}

/// What a condition is evaluated against: one request, its store, and the entities of its
/// principal and resource, looked up once.
pub(crate) struct Env<'a> {
    principal: &'a Literal,
    action: &'a Literal,
    resource: &'a Literal,
    context: &'a BTreeMap<SmolStr, Value>,
    store: Store<'a>,
    principal_entity: Found<'a>,
    resource_entity: Found<'a>,
}

/// An entity lookup: `Some(Some(entity))`, `Some(None)` for no such entity, or `None` when the
/// store answers with a residual (partial stores are Cedar's).
type Found<'a> = Option<Option<&'a Entity>>;

/// The store a decision reads entities from: Cedar's, or the bundle's static entities by uid
/// (the same entities, behind a faster hash) when the request brings none of its own.
#[derive(Clone, Copy)]
pub(crate) enum Store<'a> {
    Cedar(&'a Entities),
    Static(&'a StaticEntities),
}

impl<'a> Store<'a> {
    pub(crate) fn lookup(self, uid: &EntityUID) -> Found<'a> {
        match self {
            Store::Static(statics) => Some(statics.get(uid)),
            Store::Cedar(store) => match store.entity(uid) {
                Dereference::Data(entity) => Some(Some(entity)),
                Dereference::NoSuchEntity => Some(None),
                Dereference::Residual(_) => None,
            },
        }
    }
}

/// The request's variables as literals, built once per decision.
pub(crate) struct Vars {
    principal: Literal,
    action: Literal,
    resource: Literal,
}

impl Vars {
    /// `None` when a variable is unknown (partial requests are Cedar's).
    pub(crate) fn new(request: &Request) -> Option<Self> {
        let lit = |entry: &EntityUIDEntry| match entry {
            EntityUIDEntry::Known { euid, .. } => Some(Literal::EntityUID(Arc::clone(euid))),
            EntityUIDEntry::Unknown { .. } => None,
        };
        Some(Self {
            principal: lit(request.principal())?,
            action: lit(request.action())?,
            resource: lit(request.resource())?,
        })
    }
}

impl<'a> Env<'a> {
    /// `None` when the context is not a concrete record (Cedar's evaluator handles that).
    pub(crate) fn new(
        vars: &'a Vars,
        context: Option<&'a Context>,
        store: Store<'a>,
    ) -> Option<Self> {
        let context = match context? {
            Context::Value(record) => record.as_ref(),
            Context::RestrictedResidual(_) => return None,
        };
        let entity = |lit: &Literal| match lit {
            Literal::EntityUID(uid) => store.lookup(uid),
            _ => Some(None),
        };
        Some(Self {
            principal_entity: entity(&vars.principal),
            resource_entity: entity(&vars.resource),
            principal: &vars.principal,
            action: &vars.action,
            resource: &vars.resource,
            context,
            store,
        })
    }

    /// The condition's value when it is a boolean Cedar would also produce without error;
    /// `None` means "ask Cedar". `slots` are the policy's template-slot values.
    pub(crate) fn holds(&self, condition: &Expr, slots: &[(SlotId, Literal)]) -> Option<bool> {
        match self.eval(condition, slots, 0)? {
            V::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn entity(&self, uid: &'a EntityUID) -> Found<'a> {
        // The request's own variables are looked up once per decision.
        for (var, found) in [
            (self.principal, self.principal_entity),
            (self.resource, self.resource_entity),
        ] {
            if let Literal::EntityUID(var) = var {
                if std::ptr::eq(var.as_ref(), uid) {
                    return found;
                }
            }
        }
        self.store.lookup(uid)
    }

    fn eval(&self, expr: &'a Expr, slots: &'a [(SlotId, Literal)], depth: u32) -> Option<V<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let depth = depth + 1;
        let bool_of = |e: &'a Expr| match self.eval(e, slots, depth)? {
            V::Bool(b) => Some(b),
            _ => None,
        };
        Some(match expr.expr_kind() {
            ExprKind::Lit(lit) => V::lit(lit),
            ExprKind::Var(Var::Principal) => V::lit(self.principal),
            ExprKind::Var(Var::Action) => V::lit(self.action),
            ExprKind::Var(Var::Resource) => V::lit(self.resource),
            ExprKind::Var(Var::Context) => V::Record(self.context),
            ExprKind::Slot(id) => V::lit(&slots.iter().find(|(s, _)| s == id)?.1),
            ExprKind::And { left, right } => V::Bool(bool_of(left)? && bool_of(right)?),
            ExprKind::Or { left, right } => V::Bool(bool_of(left)? || bool_of(right)?),
            ExprKind::If {
                test_expr,
                then_expr,
                else_expr,
            } => {
                if bool_of(test_expr)? {
                    self.eval(then_expr, slots, depth)?
                } else {
                    self.eval(else_expr, slots, depth)?
                }
            }
            ExprKind::UnaryApp { op, arg } => match (op, self.eval(arg, slots, depth)?) {
                (UnaryOp::Not, V::Bool(b)) => V::Bool(!b),
                (UnaryOp::Neg, V::Long(n)) => V::Long(n.checked_neg()?),
                (UnaryOp::IsEmpty, V::Set(s)) => V::Bool(s.is_empty()),
                (UnaryOp::IsEmpty, V::Elems(elems)) => V::Bool(elems.is_empty()),
                _ => return None,
            },
            ExprKind::Set(elems)
                if elems
                    .iter()
                    .all(|e| matches!(e.expr_kind(), ExprKind::Lit(_))) =>
            {
                V::Elems(elems)
            }
            ExprKind::ExtensionFunctionApp { fn_name, args } => {
                match self.call(fn_name, args, slots, depth)?.value_kind() {
                    ValueKind::Lit(Literal::Bool(b)) => V::Bool(*b),
                    ValueKind::Lit(Literal::Long(n)) => V::Long(*n),
                    // Other results would have to be owned: Cedar's path.
                    _ => return None,
                }
            }
            ExprKind::BinaryApp { op, arg1, arg2 } => {
                // Cedar evaluates both operands before applying any binary operator.
                let (a, b) = (
                    self.eval(arg1, slots, depth)?,
                    self.eval(arg2, slots, depth)?,
                );
                self.binary(*op, a, b)?
            }
            ExprKind::GetAttr { expr, attr } => {
                self.get_attr(self.eval(expr, slots, depth)?, attr)?
            }
            ExprKind::HasAttr { expr, attr } => {
                self.has_attr(self.eval(expr, slots, depth)?, attr)?
            }
            ExprKind::Like { expr, pattern } => match self.eval(expr, slots, depth)? {
                V::Lit(Literal::String(s)) => V::Bool(pattern.wildcard_match(s)),
                _ => return None,
            },
            ExprKind::Is { expr, entity_type } => {
                V::Bool(self.eval(expr, slots, depth)?.uid()?.entity_type() == entity_type)
            }
            // Sets of other expressions, record literals, unknowns: Cedar's path.
            _ => return None,
        })
    }

    /// An extension function's value, its arguments evaluated first as Cedar does.
    #[inline(never)]
    fn call(
        &self,
        name: &Name,
        args: &'a [Expr],
        slots: &'a [(SlotId, Literal)],
        depth: u32,
    ) -> Option<Value> {
        let args = args
            .iter()
            .map(|arg| match arg.expr_kind() {
                // A constructor's value (`ip("10.0.0.0/8")`) is owned, not borrowed.
                ExprKind::ExtensionFunctionApp { fn_name, args } if depth < MAX_DEPTH => {
                    self.call(fn_name, args, slots, depth + 1)
                }
                _ => self.eval(arg, slots, depth)?.to_value(),
            })
            .collect::<Option<Vec<Value>>>()?;
        match Extensions::all_available()
            .func(name)
            .ok()?
            .call(&args)
            .ok()?
        {
            PartialValue::Value(value) => Some(value),
            PartialValue::Residual(_) => None,
        }
    }

    // Kept out of line so that `eval`'s frame, paid at every level of recursion, stays small.
    #[inline(never)]
    fn get_attr(&self, value: V<'a>, attr: &str) -> Option<V<'a>> {
        Some(match value {
            V::Record(record) => V::of(record.get(attr)?),
            V::Lit(Literal::EntityUID(uid)) => match self.entity(uid)??.get(attr)? {
                PartialValue::Value(value) => V::of(value),
                PartialValue::Residual(_) => return None,
            },
            _ => return None,
        })
    }

    #[inline(never)]
    fn has_attr(&self, value: V<'a>, attr: &str) -> Option<V<'a>> {
        Some(match value {
            V::Record(record) => V::Bool(record.contains_key(attr)),
            V::Lit(Literal::EntityUID(uid)) => {
                V::Bool(self.entity(uid)?.is_some_and(|e| e.get(attr).is_some()))
            }
            _ => return None,
        })
    }

    #[inline(never)]
    fn binary(&self, op: BinaryOp, a: V<'a>, b: V<'a>) -> Option<V<'a>> {
        Some(match (op, a, b) {
            (BinaryOp::Eq, a, b) => V::Bool(a.equals(b)?),
            (BinaryOp::Less, V::Long(x), V::Long(y)) => V::Bool(x < y),
            (BinaryOp::LessEq, V::Long(x), V::Long(y)) => V::Bool(x <= y),
            (BinaryOp::Add, V::Long(x), V::Long(y)) => V::Long(x.checked_add(y)?),
            (BinaryOp::Sub, V::Long(x), V::Long(y)) => V::Long(x.checked_sub(y)?),
            (BinaryOp::Mul, V::Long(x), V::Long(y)) => V::Long(x.checked_mul(y)?),
            (BinaryOp::In, a, b) => {
                let uid = a.uid()?;
                let entity = self.entity(uid)?;
                let within = |group: &EntityUID| {
                    uid == group || entity.is_some_and(|e| e.is_descendant_of(group))
                };
                match b {
                    V::Lit(Literal::EntityUID(group)) => V::Bool(within(group)),
                    // Cedar requires every element to be an entity before looking at any.
                    b => {
                        let mut found = false;
                        b.elements()?.for_each(|member| {
                            let group = member.uid()?;
                            found = found || within(group);
                            Some(())
                        })?;
                        V::Bool(found)
                    }
                }
            }
            (BinaryOp::Contains, a, b) => V::Bool(a.elements()?.contains(b)?),
            (BinaryOp::ContainsAll, a, b) => V::Bool(a.elements()?.contain(b.elements()?, true)?),
            (BinaryOp::ContainsAny, a, b) => V::Bool(a.elements()?.contain(b.elements()?, false)?),
            (BinaryOp::HasTag, a, V::Lit(Literal::String(tag))) => V::Bool(
                self.entity(a.uid()?)?
                    .is_some_and(|e| e.get_tag(tag).is_some()),
            ),
            (BinaryOp::GetTag, a, V::Lit(Literal::String(tag))) => {
                match self.entity(a.uid()?)??.get_tag(tag)? {
                    PartialValue::Value(value) => V::of(value),
                    PartialValue::Residual(_) => return None,
                }
            }
            _ => return None,
        })
    }
}

/// `Set::contains` without building a `Value` for the element.
fn contains(set: &Set, element: V<'_>) -> Option<bool> {
    match (&set.fast, element) {
        // An all-literal set holds only literals, so it holds no set, record or extension value.
        (Some(literals), V::Lit(lit)) => Some(literals.contains(lit)),
        (Some(literals), V::Bool(b)) => Some(literals.contains(&Literal::Bool(b))),
        (Some(literals), V::Long(n)) => Some(literals.contains(&Literal::Long(n))),
        (Some(_), _) => Some(false),
        // A set holding non-literals: Cedar's ordered lookup decides.
        (None, _) => None,
    }
}
