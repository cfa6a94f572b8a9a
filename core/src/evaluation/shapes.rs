//! Request and entity validation against the schema, vouched for without Cedar where that is
//! certain.
//!
//! Cedar validates a request (and an entity) by converting its values into restricted
//! expressions and type checking those, which costs more than deciding most requests. At load,
//! each action's principal types, resource types and context type, and each ordinary entity
//! type's attributes, ancestor types and tags, are compiled into [`Shape`]s; a request or entity
//! that plainly conforms (the types are listed, records hold exactly the declared attributes
//! with values of the declared types, entity references are of ordinary declared types) is
//! accepted here. Anything else, including every request Cedar would reject, goes to
//! Cedar's validation, which reports the exact error. So this module only ever says "valid"
//! where Cedar says so too; `tests/it/fast_eval.rs` checks that on generated contexts and entities.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use cedar_policy::Schema;
// foldhash, not SipHash: every request looks up its action's shape.
use cedar_policy_core::ast::{
    self, Entity, EntityType, EntityUID, ExtensionFunction, Literal, Name, PartialValue, Value,
    ValueKind,
};
use cedar_policy_core::entities::SchemaType as ArgType;
use cedar_policy_core::extensions::{self, Extensions};
use cedar_policy_core::validator::types::{
    Attributes, BoolType, EntityKind, OpenTag, Type as SchemaType,
};
use cedar_policy_core::validator::{ValidatorEntityTypeKind, ValidatorSchema};
use hashbrown::HashMap;
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
    /// An extension type (`ipaddr`, `decimal`, `datetime`, `duration`), with the constructor
    /// Cedar's reader calls on a string where the schema expects one.
    Extension(Name, Option<&'static ExtensionFunction>),
    Unsure,
}

/// What an entity of one ordinary type must be: its attributes (sorted, with whether each is
/// required), the types its ancestors may have, and its tags' shape (`None`: no tags).
struct EntityShape {
    attrs: Vec<(SmolStr, Shape, bool)>,
    required: usize,
    ancestors: Vec<EntityType>,
    tags: Option<Shape>,
}

struct ActionShape {
    principals: Vec<EntityType>,
    resources: Vec<EntityType>,
    context: Shape,
    /// Whether the context type holds an extension type anywhere.
    extensions: bool,
}

/// Every schema action's request shape, and every ordinary entity type's shape.
pub(crate) struct Shapes {
    actions: HashMap<EntityUID, ActionShape>,
    /// Whether some action's context type holds an extension type.
    extensions: bool,
    entities: HashMap<EntityType, EntityShape>,
}

impl Shapes {
    pub(crate) fn new(schema: &Schema) -> Self {
        let validator: &ValidatorSchema = schema.as_ref();
        let ordinary = |t: &&EntityType| {
            !t.is_action()
                && matches!(
                    validator.get_entity_type(t).map(|d| &d.kind),
                    Some(ValidatorEntityTypeKind::Standard(_))
                )
        };
        let actions: HashMap<EntityUID, ActionShape> = schema
            .actions()
            .filter_map(|uid| {
                let uid: &EntityUID = uid.as_ref();
                let action = validator.get_action_id(uid)?;
                // External actions (no context type) are Cedar's to refuse.
                let context = Shape::of(action.context_type()?, &ordinary);
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
                        extensions: context.holds_extension(),
                        context,
                    },
                ))
            })
            .collect();
        let entities = validator
            .entity_types()
            .filter(|t| ordinary(&t.name()))
            .filter_map(|t| {
                if t.open_attributes() != OpenTag::ClosedAttributes {
                    return None;
                }
                let attrs = fields(t.attributes(), &ordinary);
                Some((
                    t.name().clone(),
                    EntityShape {
                        required: attrs.iter().filter(|f| f.2).count(),
                        attrs,
                        // Cedar allows an ancestor of any type declaring this one a member.
                        ancestors: validator
                            .entity_types()
                            .filter(|p| p.descendants.contains(t.name()) && ordinary(&p.name()))
                            .map(|p| p.name().clone())
                            .collect(),
                        tags: t.tag_type().map(|tags| Shape::of(tags, &ordinary)),
                    },
                ))
            })
            .collect();
        Self {
            extensions: actions.values().any(|a| a.extensions),
            actions,
            entities,
        }
    }

    /// True only when Cedar's schema conformance check would accept this entity.
    pub(crate) fn vouch_entity(&self, entity: &Entity) -> bool {
        let Some(shape) = self.entities.get(entity.uid().entity_type()) else {
            return false;
        };
        let mut required = 0;
        for (name, value) in entity.attrs() {
            let Ok(i) = shape
                .attrs
                .binary_search_by(|field| field.0.as_str().cmp(name.as_str()))
            else {
                return false;
            };
            let (_, attr, is_required) = &shape.attrs[i];
            match value {
                PartialValue::Value(value) if attr.conforms(value) => {
                    required += usize::from(*is_required)
                }
                _ => return false,
            }
        }
        required == shape.required
            && entity
                .ancestors()
                .all(|a| shape.ancestors.contains(a.entity_type()))
            && match &shape.tags {
                None => entity.tags().next().is_none(),
                Some(tags) => entity
                    .tags()
                    .all(|(_, v)| matches!(v, PartialValue::Value(v) if tags.conforms(v))),
            }
    }

    /// The context with each string its action's context type reads as an extension value
    /// built into that value, as Cedar's reader builds it (the fast reader reads the string);
    /// `None` when there is none to build. A string that does not build stays a string, which
    /// the shapes then refuse, so Cedar's reader words the error.
    pub(crate) fn build_extensions(
        &self,
        action: &EntityUID,
        context: &ast::Context,
    ) -> Option<ast::Context> {
        if !self.extensions {
            return None;
        }
        let shape = self.actions.get(action).filter(|s| s.extensions)?;
        match context {
            ast::Context::Value(record) => Some(ast::Context::Value(Arc::new(
                shape.context.build_record(record)?,
            ))),
            ast::Context::RestrictedResidual(_) => None,
        }
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

/// A closed record's fields, sorted by name.
fn fields(
    attrs: &Attributes,
    ordinary: &dyn Fn(&&EntityType) -> bool,
) -> Vec<(SmolStr, Shape, bool)> {
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
    fields
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
            } => Shape::Record(fields(attrs, ordinary)),
            SchemaType::ExtensionType { name } => Shape::Extension(name.clone(), constructor(name)),
            _ => Shape::Unsure,
        }
    }

    fn holds_extension(&self) -> bool {
        match self {
            Shape::Extension(..) => true,
            Shape::Set(element) => element.holds_extension(),
            Shape::Record(fields) => fields.iter().any(|(_, shape, _)| shape.holds_extension()),
            _ => false,
        }
    }

    /// `value` with the extension values its strings stand for built (see
    /// `Shapes::build_extensions`); `None` when nothing changes.
    fn build(&self, value: &Value) -> Option<Value> {
        match (self, value.value_kind()) {
            (Shape::Extension(_, Some(constructor)), ValueKind::Lit(Literal::String(_))) => {
                match constructor.call(std::slice::from_ref(value)) {
                    Ok(PartialValue::Value(built)) => Some(built),
                    _ => None,
                }
            }
            (Shape::Record(_), ValueKind::Record(record)) => Some(Value::record_arc(
                Arc::new(self.build_record(record)?),
                None,
            )),
            (Shape::Set(element), ValueKind::Set(set)) if element.holds_extension() => {
                let mut changed = false;
                let values: Vec<Value> = set
                    .iter()
                    .map(|v| match element.build(v) {
                        Some(built) => {
                            changed = true;
                            built
                        }
                        None => v.clone(),
                    })
                    .collect();
                changed.then(|| Value::set(values, None))
            }
            _ => None,
        }
    }

    fn build_record(&self, record: &BTreeMap<SmolStr, Value>) -> Option<BTreeMap<SmolStr, Value>> {
        let Shape::Record(fields) = self else {
            return None;
        };
        let mut built: Option<BTreeMap<SmolStr, Value>> = None;
        for (name, shape, _) in fields {
            if let Some(value) = record.get(name).and_then(|v| shape.build(v)) {
                built
                    .get_or_insert_with(|| record.clone())
                    .insert(name.clone(), value);
            }
        }
        built
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
            (Shape::Extension(name, _), ValueKind::ExtensionValue(value)) => {
                value.typename() == *name
            }
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

/// The constructor Cedar's JSON reader calls on a string where the schema expects an extension
/// type: the one-argument function taking a string and returning that type.
fn constructor(name: &Name) -> Option<&'static ExtensionFunction> {
    static CONSTRUCTORS: LazyLock<Vec<&'static ExtensionFunction>> = LazyLock::new(|| {
        [
            extensions::ipaddr::extension(),
            extensions::decimal::extension(),
            extensions::datetime::extension(),
        ]
        .iter()
        .flat_map(|extension| extension.funcs())
        .filter(|f| f.is_single_arg_constructor() && f.arg_types() == [ArgType::String])
        .filter_map(|f| Extensions::all_available().func(f.name()).ok())
        .collect()
    });
    CONSTRUCTORS.iter().copied().find(|f| {
        matches!(f.return_type(), Some(ArgType::Extension { name: returned }) if returned == name)
    })
}
