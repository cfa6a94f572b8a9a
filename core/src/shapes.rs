//! Request validation against the schema, vouched for without Cedar where that is certain.
//!
//! Cedar validates a request by converting its context into a restricted expression and type
//! checking that, which costs more than deciding most requests. At load, each action's
//! principal types, resource types and context type are compiled into a [`Shape`]; a request
//! that plainly conforms (the types are listed, the context holds exactly the declared
//! attributes with values of the declared types, entity references are of ordinary declared
//! types) is accepted here. Anything else, including every request Cedar would reject, goes to
//! Cedar's validation, which reports the exact error. So this module only ever says "valid"
//! where Cedar says so too; `tests/request_shapes.rs` checks that on generated contexts.

use std::collections::{BTreeMap, HashMap};

use cedar_policy::Schema;
use cedar_policy_core::ast::{EntityType, EntityUID, Literal, Value, ValueKind};
use cedar_policy_core::validator::types::{BoolType, EntityKind, OpenTag, Type as SchemaType};
use cedar_policy_core::validator::{ValidatorEntityTypeKind, ValidatorSchema};
use smol_str::SmolStr;

/// What a value must be to conform, or `Unsure` where only Cedar can tell.
enum Shape {
    Bool(Option<bool>),
    Long,
    String,
    Set(Box<Shape>),
    /// An ordinary (not enumerated, not action) entity type.
    Entity(EntityType),
    /// A closed record: attributes sorted by name, with whether each is required.
    Record(Vec<(SmolStr, Shape, bool)>),
    Unsure,
}

struct ActionShape {
    principals: Vec<EntityType>,
    resources: Vec<EntityType>,
    context: Shape,
}

/// Every schema action's request shape.
pub(crate) struct RequestShapes {
    actions: HashMap<EntityUID, ActionShape>,
}

impl RequestShapes {
    pub(crate) fn new(schema: &Schema) -> Self {
        let validator: &ValidatorSchema = schema.as_ref();
        let ordinary = |t: &&EntityType| {
            !t.is_action()
                && matches!(
                    validator.get_entity_type(t).map(|d| &d.kind),
                    Some(ValidatorEntityTypeKind::Standard(_))
                )
        };
        let actions = schema
            .actions()
            .filter_map(|uid| {
                let uid: &EntityUID = uid.as_ref();
                let action = validator.get_action_id(uid)?;
                // External actions (no context type) are Cedar's to refuse.
                let context = action.context_type()?;
                Some((
                    uid.clone(),
                    ActionShape {
                        principals: action
                            .applies_to_principals()
                            .filter(ordinary)
                            .cloned()
                            .collect(),
                        resources: action
                            .applies_to_resources()
                            .filter(ordinary)
                            .cloned()
                            .collect(),
                        context: Shape::of(context, &ordinary),
                    },
                ))
            })
            .collect();
        Self { actions }
    }

    /// True only when Cedar's request validation would accept this request.
    pub(crate) fn vouch(
        &self,
        principal: &EntityUID,
        action: &EntityUID,
        resource: &EntityUID,
        context: &BTreeMap<SmolStr, Value>,
    ) -> bool {
        let Some(shape) = self.actions.get(action) else {
            return false;
        };
        shape.principals.contains(principal.entity_type())
            && shape.resources.contains(resource.entity_type())
            && shape.context.record_conforms(context)
    }
}

impl Shape {
    fn of(ty: &SchemaType, ordinary: &dyn Fn(&&EntityType) -> bool) -> Self {
        match ty {
            SchemaType::Bool(BoolType::AnyBool) => Shape::Bool(None),
            SchemaType::Bool(BoolType::True) => Shape::Bool(Some(true)),
            SchemaType::Bool(BoolType::False) => Shape::Bool(Some(false)),
            SchemaType::Long => Shape::Long,
            SchemaType::String => Shape::String,
            SchemaType::Set {
                element_type: Some(element),
            } => Shape::Set(Box::new(Shape::of(element, ordinary))),
            SchemaType::Entity(EntityKind::Entity(lub)) => match lub.get_single_entity() {
                Some(t) if ordinary(&t) => Shape::Entity(t.clone()),
                _ => Shape::Unsure,
            },
            SchemaType::Record {
                attrs,
                open_attributes: OpenTag::ClosedAttributes,
            } => {
                let mut fields: Vec<(SmolStr, Shape, bool)> = attrs
                    .iter()
                    .map(|(name, attr)| {
                        (
                            name.clone(),
                            Shape::of(&attr.attr_type, ordinary),
                            attr.is_required,
                        )
                    })
                    .collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Shape::Record(fields)
            }
            _ => Shape::Unsure,
        }
    }

    fn conforms(&self, value: &Value) -> bool {
        match (self, value.value_kind()) {
            (Shape::Bool(want), ValueKind::Lit(Literal::Bool(b))) => want.is_none_or(|w| w == *b),
            (Shape::Long, ValueKind::Lit(Literal::Long(_))) => true,
            (Shape::String, ValueKind::Lit(Literal::String(_))) => true,
            (Shape::Entity(t), ValueKind::Lit(Literal::EntityUID(uid))) => uid.entity_type() == t,
            (Shape::Set(element), ValueKind::Set(set)) => {
                set.authoritative.iter().all(|v| element.conforms(v))
            }
            (Shape::Record(_), ValueKind::Record(record)) => self.record_conforms(record),
            _ => false,
        }
    }

    /// Every attribute declared and of its type, every required attribute present.
    fn record_conforms(&self, record: &BTreeMap<SmolStr, Value>) -> bool {
        let Shape::Record(fields) = self else {
            return false;
        };
        let mut values = record.iter().peekable();
        for (name, shape, required) in fields {
            match values.peek() {
                Some((key, value)) if *key == name => {
                    if !shape.conforms(value) {
                        return false;
                    }
                    values.next();
                }
                // A key sorting before this field is one the schema does not declare.
                Some((key, _)) if *key < name => return false,
                _ if *required => return false,
                _ => {}
            }
        }
        values.next().is_none()
    }
}
