//! A residual condition on the resource, written as SQL through the bundle's mapping.
//!
//! Every residual `e` is written twice: `T(e)`, true exactly where `e` evaluates to true, and
//! `F(e)`, true exactly where it evaluates to false. Where `e` would error (a missing tag, an
//! absent optional attribute, a row the mapping needs and the database lacks) both are false,
//! as Cedar skips a policy that errors. Negation only swaps the two (`T(!e) = F(e)`), so SQL's
//! `NOT` and its NULLs never turn an error into a match; `&&` and `||` keep Cedar's
//! short-circuit (`T(a || b) = T(a) OR (F(a) AND T(b))`). What the mapping cannot express is
//! an error naming the expression, never a wider or narrower filter.
//!
//! A table reached from the resource's own id is written `<table>.id IN (SELECT ...)`, which a
//! database evaluates once for the whole query; reached from anything else, `EXISTS (...)`.
//!
//! Long: one translator, the reading of each residual form and the SQL each predicate takes,
//! which only make sense together.

use std::collections::BTreeMap;

use cedar_policy_core::ast::{
    BinaryOp, EntityType, EntityUID, Expr, Literal, UnaryOp, Value, ValueKind, Var,
};
use cedar_policy_core::tpe::residual::{Residual, ResidualKind};

use crate::query::mapping::{Attribute, Column, EntityMapping, Kind, SqlMapping, Tags};

/// The SQL dialect a filter is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$1`, `$2`, ... placeholders; `traversal_ids` for hierarchy.
    Postgres,
    /// SQLite: `?` placeholders, booleans bound as 1 and 0; a recursive walk of parent ids for
    /// hierarchy.
    Sqlite,
}

impl Dialect {
    /// `postgres` or `sqlite`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "postgres" => Some(Self::Postgres),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }
}

/// A bound parameter; as JSON, the plain value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum SqlValue {
    /// An integer (ids, levels, mapped strings).
    Long(i64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
}

/// What cannot be translated: the expression, in Cedar, and why.
#[derive(Debug)]
pub(crate) struct Untranslatable {
    pub(crate) expression: String,
    pub(crate) why: String,
}

type Result<T> = std::result::Result<T, Untranslatable>;

/// Marks a parameter in the text until [`Translator::finish`] numbers them in textual order.
const MARK: char = '\u{1}';

/// The prefix of the translator's own table aliases (`q1`, `q2`, ...); the mapping's names may
/// not take that form (checked at load).
pub(crate) const ALIAS: char = 'q';

/// How a subquery is tied to the row outside it: its column `inner` equals `owner`; `keyed`
/// when `owner` is the resource's own id (never NULL), so the subquery is written with `IN`.
#[derive(Debug, Clone)]
struct Link {
    inner: String,
    owner: String,
    keyed: bool,
}

/// Tables entered to reach a value: a subquery over `from`, tied to the outer row by `link`,
/// under `conds`.
#[derive(Debug, Clone, Default)]
struct Scope {
    from: Vec<String>,
    link: Option<Link>,
    conds: Vec<String>,
}

impl Scope {
    /// The scope with `table alias` entered, `alias.key` tied to `owner`.
    fn enter(&self, table: &str, alias: &str, key: &str, owner: &str, keyed: bool) -> Self {
        let mut scope = self.clone();
        scope.from.push(format!("{table} {alias}"));
        let inner = format!("{alias}.{key}");
        if scope.link.is_none() && self.from.is_empty() {
            scope.link = Some(Link {
                inner,
                owner: owner.to_owned(),
                keyed,
            });
        } else {
            scope.conds.push(format!("{inner} = {owner}"));
        }
        scope
    }

    fn and(&self, cond: String) -> Self {
        let mut scope = self.clone();
        scope.conds.push(cond);
        scope
    }

    /// `cond` inside the scope.
    fn wrap(&self, cond: &str) -> String {
        let mut conds = self.conds.clone();
        if cond != "TRUE" || conds.is_empty() {
            conds.push(cond.to_owned());
        }
        let Some(link) = &self.link else {
            return match conds.as_slice() {
                [one] => one.clone(),
                all => format!("({})", all.join(" AND ")),
            };
        };
        if conds.iter().any(|c| c == "FALSE") {
            return "FALSE".to_owned();
        }
        if link.keyed {
            conds.retain(|c| c != "TRUE");
            // A NULL among the subquery's ids would make `IN` NULL where it means false.
            conds.push(format!("{} IS NOT NULL", link.inner));
            return format!(
                "{} IN (SELECT {} FROM {} WHERE {})",
                link.owner,
                link.inner,
                self.from.join(", "),
                conds.join(" AND ")
            );
        }
        conds.insert(0, format!("{} = {}", link.inner, link.owner));
        conds.retain(|c| c != "TRUE");
        format!(
            "EXISTS (SELECT 1 FROM {} WHERE {})",
            self.from.join(", "),
            conds.join(" AND ")
        )
    }
}

/// What a residual denotes, as far as SQL can reach it.
enum Node<'m> {
    Value(Value),
    /// What errors wherever it is evaluated: an attribute or tag of an entity the store lacks
    /// (partial evaluation leaves those unknown; a check finds them missing).
    Error,
    /// An entity: the SQL of its id, its type, the alias of its own row when in scope, and
    /// whether it is the resource itself.
    Entity {
        id: String,
        ty: EntityType,
        row: Option<String>,
        keyed: bool,
        scope: Scope,
    },
    /// A column's value.
    Column {
        sql: String,
        column: &'m Column,
        scope: Scope,
    },
    /// A set kept in a table, for the entity whose id is `owner`.
    Set {
        table: &'m str,
        key: &'m str,
        owner: String,
        keyed: bool,
        elements: &'m Column,
        scope: Scope,
    },
    /// A record whose fields are columns of the row aliased `row`.
    Record {
        row: String,
        fields: &'m BTreeMap<String, Column>,
        scope: Scope,
    },
}

/// A boolean residual as its two conditions.
struct Pred {
    t: String,
    f: String,
}

impl Pred {
    fn constant(b: bool) -> Self {
        let (t, f) = if b {
            ("TRUE", "FALSE")
        } else {
            ("FALSE", "TRUE")
        };
        Self {
            t: t.into(),
            f: f.into(),
        }
    }

    /// Both false: the expression errors.
    fn error() -> Self {
        Self {
            t: "FALSE".into(),
            f: "FALSE".into(),
        }
    }

    /// `t` and `f` (each already exact) inside `scope`.
    fn scoped(scope: &Scope, t: &str, f: &str) -> Self {
        Self {
            t: scope.wrap(t),
            f: scope.wrap(f),
        }
    }

    /// A condition that never errors once `scope` is reached (its `F` is `NOT T`; `t` must
    /// never be NULL).
    fn total(scope: &Scope, t: &str) -> Self {
        Self::scoped(scope, t, &not(t))
    }
}

/// Where the tags of an entity are, or why there are none to read.
enum TagsOf<'a> {
    /// Reading them errors.
    Error,
    /// The entity does not exist: it has no tag.
    Missing,
    Tags {
        tags: &'a Tags,
        owner: String,
        keyed: bool,
        scope: Scope,
    },
}

/// Writes residuals over one resource type as SQL.
pub(crate) struct Translator<'a> {
    mapping: &'a SqlMapping,
    dialect: Dialect,
    params: Vec<SqlValue>,
    aliases: usize,
    root_table: &'a str,
    root_type: &'a EntityType,
    /// The known ancestors of a known entity (for `principal in resource`), or `None` when the
    /// entity is unknown.
    ancestors: &'a dyn Fn(&EntityUID) -> Option<Vec<EntityUID>>,
}

impl<'a> Translator<'a> {
    /// A translator for resources of `root_type`, which the mapping must give a table.
    pub(crate) fn new(
        mapping: &'a SqlMapping,
        dialect: Dialect,
        root_type: &'a EntityType,
        ancestors: &'a dyn Fn(&EntityUID) -> Option<Vec<EntityUID>>,
    ) -> std::result::Result<Self, String> {
        let name = root_type.to_string();
        let root_table = mapping
            .entity(&name)
            .and_then(|m| m.table.as_deref())
            .ok_or_else(|| format!("the SQL mapping gives `{name}` no table"))?;
        Ok(Self {
            mapping,
            dialect,
            params: Vec::new(),
            aliases: 0,
            root_table,
            root_type,
            ancestors,
        })
    }

    /// The condition under which `residual` evaluates to true.
    pub(crate) fn holds(&mut self, residual: &Residual) -> Result<String> {
        Ok(self.pred(residual)?.t)
    }

    /// The final text and its parameters, placeholders numbered in the order they appear.
    pub(crate) fn finish(self, text: &str) -> (String, Vec<SqlValue>) {
        let mut out = String::with_capacity(text.len());
        let mut params = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != MARK {
                out.push(c);
                continue;
            }
            let digits: String = chars.by_ref().take_while(|c| *c != MARK).collect();
            // Every mark is one `param` wrote.
            let index: usize = digits.parse().expect("a parameter mark holds its index");
            params.push(self.params[index].clone());
            match self.dialect {
                Dialect::Postgres => out.push_str(&format!("${}", params.len())),
                Dialect::Sqlite => out.push('?'),
            }
        }
        (out, params)
    }

    fn param(&mut self, value: SqlValue) -> String {
        // SQLite has no boolean type: it stores and compares 1 and 0.
        let value = match (self.dialect, value) {
            (Dialect::Sqlite, SqlValue::Bool(b)) => SqlValue::Long(i64::from(b)),
            (_, value) => value,
        };
        self.params.push(value);
        format!("{MARK}{}{MARK}", self.params.len() - 1)
    }

    /// Whether `v` is an entity the store lacks.
    fn missing(&self, v: &Value) -> bool {
        matches!(v.value_kind(), ValueKind::Lit(Literal::EntityUID(uid)) if (self.ancestors)(uid).is_none())
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("{ALIAS}{}", self.aliases)
    }

    fn entity_mapping(&self, ty: &EntityType) -> Option<&'a EntityMapping> {
        self.mapping.entity(&ty.to_string())
    }

    fn pred(&mut self, r: &Residual) -> Result<Pred> {
        match r {
            Residual::Error(_) => Ok(Pred::error()),
            Residual::Concrete { value, .. } => match value.value_kind() {
                ValueKind::Lit(Literal::Bool(b)) => Ok(Pred::constant(*b)),
                _ => Err(untranslatable(r, "not a boolean")),
            },
            Residual::Partial { kind, .. } => match kind {
                ResidualKind::And { left, right } => {
                    let (a, b) = (self.pred(left)?, self.pred(right)?);
                    if guards_tag_of(left, right) {
                        // `e.hasTag(k) && φ(e.getTag(k))`: φ is true or false only where the
                        // tag exists, so `T(φ)` and `F(φ)` each imply `T(a)`.
                        return Ok(Pred {
                            t: b.t,
                            f: or(&a.f, &b.f),
                        });
                    }
                    Ok(Pred {
                        t: and(&a.t, &b.t),
                        f: or(&a.f, &and(&a.t, &b.f)),
                    })
                }
                ResidualKind::Or { left, right } => {
                    let (a, b) = (self.pred(left)?, self.pred(right)?);
                    Ok(Pred {
                        t: or(&a.t, &and(&a.f, &b.t)),
                        f: and(&a.f, &b.f),
                    })
                }
                ResidualKind::UnaryApp {
                    op: UnaryOp::Not,
                    arg,
                } => {
                    let a = self.pred(arg)?;
                    Ok(Pred { t: a.f, f: a.t })
                }
                ResidualKind::If {
                    test_expr,
                    then_expr,
                    else_expr,
                } => {
                    let (c, a, b) = (
                        self.pred(test_expr)?,
                        self.pred(then_expr)?,
                        self.pred(else_expr)?,
                    );
                    Ok(Pred {
                        t: or(&and(&c.t, &a.t), &and(&c.f, &b.t)),
                        f: or(&and(&c.t, &a.f), &and(&c.f, &b.f)),
                    })
                }
                ResidualKind::HasAttr { expr, attr } => self.has_attr(r, expr, attr),
                ResidualKind::BinaryApp { op, arg1, arg2 } => self.binary(r, *op, arg1, arg2),
                ResidualKind::Is { expr, entity_type } => match self.node(expr)? {
                    Node::Error => Ok(Pred::error()),
                    Node::Entity { ty, scope, .. } => {
                        let p = Pred::constant(ty == *entity_type);
                        Ok(Pred::scoped(&scope, &p.t, &p.f))
                    }
                    _ => Err(untranslatable(r, "`is` of something not an entity")),
                },
                ResidualKind::GetAttr { .. } | ResidualKind::Var(_) => match self.node(r)? {
                    Node::Error => Ok(Pred::error()),
                    Node::Column { sql, column, scope } if column.kind() == Kind::Bool => {
                        let (yes, no) = (
                            self.param(SqlValue::Bool(true)),
                            self.param(SqlValue::Bool(false)),
                        );
                        Ok(Pred::scoped(
                            &scope,
                            &format!("{sql} = {yes}"),
                            &format!("{sql} = {no}"),
                        ))
                    }
                    _ => Err(untranslatable(r, "not a boolean column")),
                },
                _ => Err(untranslatable(r, "no SQL form for this expression")),
            },
        }
    }

    /// What a non-boolean residual denotes.
    fn node(&mut self, r: &Residual) -> Result<Node<'a>> {
        match r {
            Residual::Concrete { value, .. } => Ok(Node::Value(value.clone())),
            Residual::Error(_) => Err(untranslatable(r, "an error where a value is needed")),
            Residual::Partial { kind, .. } => match kind {
                ResidualKind::Var(Var::Resource) => Ok(Node::Entity {
                    id: format!(
                        "{}.{}",
                        self.root_table,
                        self.entity_mapping(self.root_type)
                            .map_or("id", |m| m.id.as_str())
                    ),
                    ty: self.root_type.clone(),
                    row: Some(self.root_table.to_owned()),
                    keyed: true,
                    scope: Scope::default(),
                }),
                ResidualKind::GetAttr { expr, attr } => {
                    let base = self.node(expr)?;
                    self.get_attr(r, base, attr)
                }
                ResidualKind::BinaryApp {
                    op: BinaryOp::GetTag,
                    arg1,
                    arg2,
                } => {
                    let Some(key) = self.tag_key(r, arg2)? else {
                        return Ok(Node::Error);
                    };
                    let TagsOf::Tags {
                        tags,
                        owner,
                        keyed,
                        scope,
                    } = self.tags_of(r, arg1)?
                    else {
                        // A tag of an entity that does not exist, or that errors: an error.
                        return Ok(Node::Error);
                    };
                    // A key that is not an id names no row: reading the tag errors.
                    let Some(key) = integer_id(&key) else {
                        return Ok(Node::Error);
                    };
                    let row = self.alias();
                    let tag = self.param(SqlValue::Long(key));
                    let scope = scope
                        .enter(&tags.table, &row, &tags.key, &owner, keyed)
                        .and(format!("{row}.{} = {tag}", tags.tag));
                    Ok(Node::Record {
                        row,
                        fields: &tags.attributes,
                        scope,
                    })
                }
                _ => Err(untranslatable(r, "no SQL form for this expression")),
            },
        }
    }

    /// A tag key, known as a string; `None` when evaluating it errors.
    fn tag_key(&mut self, r: &Residual, key: &Residual) -> Result<Option<String>> {
        match self.node(key)? {
            Node::Value(key) => match key.value_kind() {
                ValueKind::Lit(Literal::String(key)) => Ok(Some(key.to_string())),
                _ => Err(untranslatable(r, "a tag key that is not a string")),
            },
            Node::Error => Ok(None),
            _ => Err(untranslatable(r, "a tag key that is not known")),
        }
    }

    /// The tags of the entity `entity` denotes.
    fn tags_of(&mut self, r: &Residual, entity: &Residual) -> Result<TagsOf<'a>> {
        match self.node(entity)? {
            Node::Error => Ok(TagsOf::Error),
            Node::Value(v) if self.missing(&v) => Ok(TagsOf::Missing),
            Node::Entity {
                id,
                ty,
                keyed,
                scope,
                ..
            } => {
                let tags = self
                    .entity_mapping(&ty)
                    .and_then(|m| m.tags.as_ref())
                    .ok_or_else(|| {
                        untranslatable(r, &format!("the SQL mapping gives `{ty}` no tags"))
                    })?;
                Ok(TagsOf::Tags {
                    tags,
                    owner: id,
                    keyed,
                    scope,
                })
            }
            _ => Err(untranslatable(r, "tags of something not an entity")),
        }
    }

    fn get_attr(&mut self, r: &Residual, base: Node<'a>, attr: &str) -> Result<Node<'a>> {
        match base {
            Node::Error => Ok(Node::Error),
            Node::Value(v) if self.missing(&v) => Ok(Node::Error),
            Node::Record { row, fields, scope } => {
                let column = fields.get(attr).ok_or_else(|| {
                    untranslatable(r, &format!("the SQL mapping has no field `{attr}`"))
                })?;
                Ok(self.column_node(format!("{row}.{}", column.column), column, scope))
            }
            Node::Entity {
                id,
                ty,
                row,
                keyed,
                scope,
            } => {
                let (mapping, attribute) = self.attribute(r, &ty, attr)?;
                match attribute {
                    Attribute::Column(column) => {
                        let (row, scope) = self.own_row(r, mapping, &id, keyed, row, scope)?;
                        Ok(self.column_node(format!("{row}.{}", column.column), column, scope))
                    }
                    Attribute::Set(set) => Ok(Node::Set {
                        table: &set.table,
                        key: &set.key,
                        owner: id,
                        keyed,
                        elements: &set.elements,
                        scope,
                    }),
                    Attribute::Record(record) => {
                        let row = self.alias();
                        let scope = scope.enter(&record.table, &row, &record.key, &id, keyed);
                        Ok(Node::Record {
                            row,
                            fields: &record.attributes,
                            scope,
                        })
                    }
                }
            }
            _ => Err(untranslatable(
                r,
                "an attribute of something that is not a record or entity",
            )),
        }
    }

    /// How attribute `attr` of entities of type `ty` is stored, with their mapping.
    fn attribute(
        &self,
        r: &Residual,
        ty: &EntityType,
        attr: &str,
    ) -> Result<(&'a EntityMapping, &'a Attribute)> {
        let mapping = self
            .entity_mapping(ty)
            .ok_or_else(|| untranslatable(r, &format!("the SQL mapping has no `{ty}`")))?;
        let attribute = mapping.attributes.get(attr).ok_or_else(|| {
            untranslatable(
                r,
                &format!("the SQL mapping has no attribute `{attr}` of `{ty}`"),
            )
        })?;
        Ok((mapping, attribute))
    }

    /// The alias of an entity's own row, entering its table when it is not in scope yet (a
    /// missing row is then an error, as reading an attribute of a missing entity is).
    fn own_row(
        &mut self,
        r: &Residual,
        mapping: &'a EntityMapping,
        id: &str,
        keyed: bool,
        row: Option<String>,
        scope: Scope,
    ) -> Result<(String, Scope)> {
        if let Some(row) = row {
            return Ok((row, scope));
        }
        let table = mapping.table.as_deref().ok_or_else(|| {
            untranslatable(r, "an entity whose type the SQL mapping gives no table")
        })?;
        let row = self.alias();
        let scope = scope.enter(table, &row, &mapping.id, id, keyed);
        Ok((row, scope))
    }

    /// A column's value; an optional column is in scope only where it is not NULL (reading an
    /// absent attribute errors), and an entity column becomes the entity.
    fn column_node(&self, sql: String, column: &'a Column, scope: Scope) -> Node<'a> {
        let scope = if column.optional {
            scope.and(format!("{sql} IS NOT NULL"))
        } else {
            scope
        };
        match column.kind() {
            // Checked at load: an entity column names a type that parses.
            Kind::Entity(ty) => Node::Entity {
                id: sql,
                ty: ty.parse().expect("a mapped entity type"),
                row: None,
                keyed: false,
                scope,
            },
            _ => Node::Column { sql, column, scope },
        }
    }

    /// `expr has attr`, which never errors on an entity: false for one that does not exist.
    fn has_attr(&mut self, r: &Residual, expr: &Residual, attr: &str) -> Result<Pred> {
        let unmapped = || untranslatable(r, &format!("the SQL mapping has no `{attr}`"));
        match self.node(expr)? {
            Node::Error => Ok(Pred::error()),
            Node::Value(v) if self.missing(&v) => Ok(Pred::constant(false)),
            Node::Record { row, fields, scope } => match fields.get(attr).ok_or_else(unmapped)? {
                c if c.optional => Ok(Pred::total(
                    &scope,
                    &format!("{row}.{} IS NOT NULL", c.column),
                )),
                _ => Ok(Pred::scoped(&scope, "TRUE", "FALSE")),
            },
            Node::Entity {
                id,
                ty,
                row,
                keyed,
                scope,
            } => {
                let (mapping, attribute) = self.attribute(r, &ty, attr)?;
                // Whether the entity exists at all: the resource does; another needs its row.
                let (own, exists) = match (&row, &mapping.table) {
                    (Some(row), _) => (row.clone(), "TRUE".to_owned()),
                    (None, Some(table)) => {
                        let own = self.alias();
                        let exists = subquery(table, &own, &mapping.id, &id, keyed, "TRUE");
                        (own, exists)
                    }
                    (None, None) => {
                        return Err(untranslatable(
                            r,
                            "`has` on an entity whose type the SQL mapping gives no table",
                        ))
                    }
                };
                let t = match attribute {
                    Attribute::Column(c) if c.optional => match &row {
                        Some(row) => format!("{row}.{} IS NOT NULL", c.column),
                        None => subquery(
                            mapping.table.as_deref().unwrap_or_default(),
                            &own,
                            &mapping.id,
                            &id,
                            keyed,
                            &format!("{own}.{} IS NOT NULL", c.column),
                        ),
                    },
                    Attribute::Column(_) | Attribute::Set(_) => exists,
                    Attribute::Record(record) => {
                        let at = self.alias();
                        let found = subquery(&record.table, &at, &record.key, &id, keyed, "TRUE");
                        and(&exists, &found)
                    }
                };
                Ok(Pred::total(&scope, &t))
            }
            _ => Err(untranslatable(
                r,
                "`has` on something that is not a record or entity",
            )),
        }
    }

    fn binary(&mut self, r: &Residual, op: BinaryOp, a: &Residual, b: &Residual) -> Result<Pred> {
        match op {
            BinaryOp::HasTag => {
                let Some(key) = self.tag_key(r, b)? else {
                    return Ok(Pred::error());
                };
                match self.tags_of(r, a)? {
                    TagsOf::Error => Ok(Pred::error()),
                    TagsOf::Missing => Ok(Pred::constant(false)),
                    TagsOf::Tags {
                        tags,
                        owner,
                        keyed,
                        scope,
                    } => {
                        // A key that is not an id names no row.
                        let Some(key) = integer_id(&key) else {
                            return Ok(Pred::scoped(&scope, "FALSE", "TRUE"));
                        };
                        let row = self.alias();
                        let tag = self.param(SqlValue::Long(key));
                        let found = subquery(
                            &tags.table,
                            &row,
                            &tags.key,
                            &owner,
                            keyed,
                            &format!("{row}.{} = {tag}", tags.tag),
                        );
                        Ok(Pred::total(&scope, &found))
                    }
                }
            }
            BinaryOp::Eq => match (self.node(a)?, self.node(b)?) {
                (Node::Error, _) | (_, Node::Error) => Ok(Pred::error()),
                (Node::Value(v), other) | (other, Node::Value(v)) => self.equals(r, other, &v),
                _ => Err(untranslatable(r, "a comparison of two unknown values")),
            },
            BinaryOp::Less | BinaryOp::LessEq => {
                let (sql, column, scope, n, flipped) = match (self.node(a)?, self.node(b)?) {
                    (Node::Error, _) | (_, Node::Error) => return Ok(Pred::error()),
                    (Node::Column { sql, column, scope }, Node::Value(v)) => {
                        (sql, column, scope, v, false)
                    }
                    (Node::Value(v), Node::Column { sql, column, scope }) => {
                        (sql, column, scope, v, true)
                    }
                    _ => {
                        return Err(untranslatable(
                            r,
                            "a comparison the SQL mapping cannot express",
                        ))
                    }
                };
                let ValueKind::Lit(Literal::Long(n)) = n.value_kind() else {
                    return Err(untranslatable(r, "an ordering of something not a number"));
                };
                if column.kind() != Kind::Long {
                    return Err(untranslatable(
                        r,
                        "an ordering of a column that is not a number",
                    ));
                }
                // `col < n` (or `n < col` when flipped), and its exact negation.
                let (t_op, f_op) = match (flipped, op == BinaryOp::Less) {
                    (false, true) => ("<", ">="),
                    (false, false) => ("<=", ">"),
                    (true, true) => (">", "<="),
                    (true, false) => (">=", "<"),
                };
                let p = self.param(SqlValue::Long(*n));
                Ok(Pred::scoped(
                    &scope,
                    &format!("{sql} {t_op} {p}"),
                    &format!("{sql} {f_op} {p}"),
                ))
            }
            BinaryOp::In => match (self.node(a)?, self.node(b)?) {
                (Node::Error, _) | (_, Node::Error) => Ok(Pred::error()),
                (
                    Node::Entity {
                        id,
                        ty,
                        row,
                        keyed,
                        scope,
                    },
                    Node::Value(v),
                ) => {
                    let targets = entity_values(&v)
                        .ok_or_else(|| untranslatable(r, "`in` something not entities"))?;
                    let mut any = "FALSE".to_owned();
                    for target in targets {
                        let one = self.descends(r, &id, &ty, row.as_deref(), keyed, &target)?;
                        any = or(&any, &one);
                    }
                    Ok(Pred::total(&scope, &any))
                }
                (Node::Value(v), Node::Entity { id, ty, scope, .. }) => {
                    let ValueKind::Lit(Literal::EntityUID(known)) = v.value_kind() else {
                        return Err(untranslatable(r, "`in` of something not an entity"));
                    };
                    // An entity the store lacks is in nothing but itself.
                    let mut ancestors = (self.ancestors)(known).unwrap_or_default();
                    ancestors.push(known.as_ref().clone());
                    let ids: Vec<String> = ancestors
                        .iter()
                        .filter(|u| *u.entity_type() == ty)
                        .filter_map(|u| integer_id(u.eid().as_ref()))
                        .map(|n| self.param(SqlValue::Long(n)))
                        .collect();
                    let t = if ids.is_empty() {
                        "FALSE".to_owned()
                    } else {
                        format!("{id} IN ({})", ids.join(", "))
                    };
                    Ok(Pred::scoped(&scope, &t, &not(&t)))
                }
                _ => Err(untranslatable(r, "`in` between two unknown entities")),
            },
            BinaryOp::Contains => {
                let (x, y) = (self.node(a)?, self.node(b)?);
                if matches!((&x, &y), (Node::Error, _) | (_, Node::Error)) {
                    return Ok(Pred::error());
                }
                let (
                    Node::Set {
                        table,
                        key,
                        owner,
                        keyed,
                        elements,
                        scope,
                    },
                    Node::Value(v),
                ) = (x, y)
                else {
                    return Err(untranslatable(
                        r,
                        "`contains` the SQL mapping cannot express",
                    ));
                };
                let row = self.alias();
                let column = format!("{row}.{}", elements.column);
                let Some(matches) = self.value_condition(&column, elements, &v) else {
                    return Ok(Pred::scoped(&scope, "FALSE", "TRUE"));
                };
                let found = subquery(table, &row, key, &owner, keyed, &matches);
                Ok(Pred::total(&scope, &found))
            }
            _ => Err(untranslatable(r, "no SQL form for this operator")),
        }
    }

    /// `node == v`.
    fn equals(&mut self, r: &Residual, node: Node<'a>, v: &Value) -> Result<Pred> {
        match node {
            Node::Entity { id, ty, scope, .. } => {
                let ValueKind::Lit(Literal::EntityUID(uid)) = v.value_kind() else {
                    return Ok(Pred::scoped(&scope, "FALSE", "TRUE"));
                };
                let t = self.id_equals(&id, &ty, uid);
                Ok(Pred::scoped(&scope, &t, &not(&t)))
            }
            Node::Column { sql, column, scope } => {
                let t = self.value_condition(&sql, column, v);
                let f = match (column.kind(), &t) {
                    // Every other stored value that maps to a Cedar string; an unmapped one is
                    // neither (the entity could not be built).
                    (Kind::Mapped(values), _) => {
                        let others: Vec<i64> = values
                            .iter()
                            .filter(|(k, _)| match v.value_kind() {
                                ValueKind::Lit(Literal::String(s)) => k.as_str() != s.as_str(),
                                _ => true,
                            })
                            .map(|(_, n)| *n)
                            .collect();
                        let others: Vec<String> = others
                            .into_iter()
                            .map(|n| self.param(SqlValue::Long(n)))
                            .collect();
                        if others.is_empty() {
                            "FALSE".to_owned()
                        } else {
                            format!("{sql} IN ({})", others.join(", "))
                        }
                    }
                    // A value the column can never hold: never equal.
                    (_, None) => "TRUE".to_owned(),
                    (_, Some(t)) => not(t),
                };
                Ok(Pred::scoped(&scope, t.as_deref().unwrap_or("FALSE"), &f))
            }
            _ => Err(untranslatable(
                r,
                "an equality the SQL mapping cannot express",
            )),
        }
    }

    /// `id` (the SQL of an entity's id, of type `ty`) is `uid`.
    fn id_equals(&mut self, id: &str, ty: &EntityType, uid: &EntityUID) -> String {
        match integer_id(uid.eid().as_ref()) {
            Some(n) if uid.entity_type() == ty => {
                format!("{id} = {}", self.param(SqlValue::Long(n)))
            }
            _ => "FALSE".to_owned(),
        }
    }

    /// The condition that `column` holds `v`, or `None` when it never can.
    fn value_condition(&mut self, sql: &str, column: &Column, v: &Value) -> Option<String> {
        let param = match (column.kind(), v.value_kind()) {
            (Kind::Long, ValueKind::Lit(Literal::Long(n))) => SqlValue::Long(*n),
            (Kind::Bool, ValueKind::Lit(Literal::Bool(b))) => SqlValue::Bool(*b),
            (Kind::String, ValueKind::Lit(Literal::String(s))) => SqlValue::Text(s.to_string()),
            (Kind::Mapped(values), ValueKind::Lit(Literal::String(s))) => {
                SqlValue::Long(*values.get(s.as_str())?)
            }
            (Kind::Entity(ty), ValueKind::Lit(Literal::EntityUID(uid))) => {
                if uid.entity_type().to_string() != ty {
                    return None;
                }
                SqlValue::Long(integer_id(uid.eid().as_ref())?)
            }
            _ => return None,
        };
        Some(format!("{sql} = {}", self.param(param)))
    }

    /// The entity with id `id` (of type `ty`; its row `row` when in scope; `keyed` when it is
    /// the resource) is `target` or a descendant of it. Never NULL.
    fn descends(
        &mut self,
        r: &Residual,
        id: &str,
        ty: &EntityType,
        row: Option<&str>,
        keyed: bool,
        target: &EntityUID,
    ) -> Result<String> {
        let mut any = "FALSE".to_owned();
        if target.entity_type() == ty {
            any = self.id_equals(id, ty, target);
        }
        let mapping = self
            .entity_mapping(ty)
            .ok_or_else(|| untranslatable(r, &format!("the SQL mapping has no `{ty}`")))?;
        let Some(parent) = &mapping.parent else {
            return Err(untranslatable(
                r,
                &format!("the SQL mapping gives `{ty}` no parent"),
            ));
        };
        // Checked at load: a parent type parses.
        let parent_type: EntityType = parent.entity_type.parse().expect("a mapped parent type");
        let parent_mapping = self
            .entity_mapping(&parent_type)
            .ok_or_else(|| untranslatable(r, &format!("the SQL mapping has no `{parent_type}`")))?;
        let self_nested = match &parent_mapping.parent {
            None => false,
            Some(p) if p.entity_type == parent.entity_type => true,
            Some(_) => {
                return Err(untranslatable(
                    r,
                    "a hierarchy of more than one parent type",
                ))
            }
        };
        if target.entity_type() != &parent_type {
            // The target's type is no ancestor type of `ty`: only `ty` itself can match.
            return Ok(any);
        }
        let Some(n) = integer_id(target.eid().as_ref()) else {
            return Ok(any);
        };
        let g = self.param(SqlValue::Long(n));
        // The test on `own`, the column holding the parent's id (never NULL once in scope).
        let test = |this: &mut Self, own: &str| -> Result<String> {
            if !self_nested {
                return Ok(format!("{own} = {g}"));
            }
            let parent_table = parent_mapping.table.as_deref().ok_or_else(|| {
                untranslatable(
                    r,
                    &format!("the SQL mapping gives `{parent_type}` no table"),
                )
            })?;
            let pid = &parent_mapping.id;
            let a = this.alias();
            Ok(match (this.dialect, &parent_mapping.traversal_ids) {
                (Dialect::Postgres, Some(traversal)) => format!(
                    "({own} = {g} OR {own} IN (SELECT {a}.{pid} FROM {parent_table} {a} WHERE {a}.{traversal} @> ARRAY[{g}]::bigint[]))"
                ),
                _ => {
                    let up = parent_mapping.parent.as_ref().map_or("", |p| p.column.as_str());
                    let b = this.alias();
                    let start = match this.dialect {
                        Dialect::Postgres => format!("CAST({g} AS bigint)"),
                        Dialect::Sqlite => g.clone(),
                    };
                    format!(
                        "{own} IN (WITH RECURSIVE {a}(id) AS (SELECT {start} UNION SELECT {b}.{pid} FROM {parent_table} {b} JOIN {a} ON {b}.{up} = {a}.id) SELECT id FROM {a})"
                    )
                }
            })
        };
        let within = match row {
            Some(row) => {
                let own = format!("{row}.{}", parent.column);
                format!("({own} IS NOT NULL AND {})", test(self, &own)?)
            }
            None => {
                let table = mapping.table.as_deref().ok_or_else(|| {
                    untranslatable(r, &format!("the SQL mapping gives `{ty}` no table"))
                })?;
                let b = self.alias();
                let own = format!("{b}.{}", parent.column);
                let cond = test(self, &own)?;
                subquery(
                    table,
                    &b,
                    &mapping.id,
                    id,
                    keyed,
                    &format!("{own} IS NOT NULL AND {cond}"),
                )
            }
        };
        Ok(or(&any, &within))
    }
}

/// A condition on the rows of `table` (aliased `alias`) whose `key` is `owner`: `cond` holds
/// for one of them.
fn subquery(table: &str, alias: &str, key: &str, owner: &str, keyed: bool, cond: &str) -> String {
    Scope::default()
        .enter(table, alias, key, owner, keyed)
        .wrap(cond)
}

/// `a AND b`, folding the constants.
pub(crate) fn and(a: &str, b: &str) -> String {
    match (a, b) {
        ("FALSE", _) | (_, "FALSE") => "FALSE".to_owned(),
        ("TRUE", x) | (x, "TRUE") => x.to_owned(),
        _ => format!("({a} AND {b})"),
    }
}

/// `a OR b`, folding the constants.
pub(crate) fn or(a: &str, b: &str) -> String {
    match (a, b) {
        ("TRUE", _) | (_, "TRUE") => "TRUE".to_owned(),
        ("FALSE", x) | (x, "FALSE") => x.to_owned(),
        _ => format!("({a} OR {b})"),
    }
}

/// `NOT a`, folding the constants (`a` never NULL).
pub(crate) fn not(a: &str) -> String {
    match a {
        "TRUE" => "FALSE".to_owned(),
        "FALSE" => "TRUE".to_owned(),
        _ => format!("NOT ({a})"),
    }
}

/// Whether `guard` is `e.hasTag(k)` and `body` can only evaluate (to true or false) by reading
/// `e.getTag(k)`: a comparison, `has`, `contains`, `is` or negation whose operand path reaches
/// that tag before anything else.
fn guards_tag_of(guard: &Residual, body: &Residual) -> bool {
    let Residual::Partial {
        kind:
            ResidualKind::BinaryApp {
                op: BinaryOp::HasTag,
                arg1,
                arg2,
            },
        ..
    } = guard
    else {
        return false;
    };
    let same = |a: &Residual, b: &Residual| Expr::from(a.clone()) == Expr::from(b.clone());
    // The tag `r` reads first, if its value needs one.
    fn read_tag(r: &Residual) -> Option<(&Residual, &Residual)> {
        let Residual::Partial { kind, .. } = r else {
            return None;
        };
        match kind {
            ResidualKind::BinaryApp {
                op: BinaryOp::GetTag,
                arg1,
                arg2,
            } => Some((arg1, arg2)),
            ResidualKind::GetAttr { expr, .. }
            | ResidualKind::HasAttr { expr, .. }
            | ResidualKind::Is { expr, .. }
            | ResidualKind::UnaryApp { arg: expr, .. } => read_tag(expr),
            ResidualKind::BinaryApp {
                op: BinaryOp::Eq | BinaryOp::Less | BinaryOp::LessEq | BinaryOp::Contains,
                arg1,
                arg2,
            } => match (read_tag(arg1), read_tag(arg2)) {
                (Some(tag), None) if matches!(arg2.as_ref(), Residual::Concrete { .. }) => {
                    Some(tag)
                }
                (None, Some(tag)) if matches!(arg1.as_ref(), Residual::Concrete { .. }) => {
                    Some(tag)
                }
                _ => None,
            },
            _ => None,
        }
    }
    read_tag(body).is_some_and(|(e, k)| same(e, arg1) && same(k, arg2))
}

/// The entities a value names: one entity, or a set of them.
fn entity_values(v: &Value) -> Option<Vec<EntityUID>> {
    match v.value_kind() {
        ValueKind::Lit(Literal::EntityUID(uid)) => Some(vec![uid.as_ref().clone()]),
        ValueKind::Set(set) => set
            .iter()
            .map(|v| match v.value_kind() {
                ValueKind::Lit(Literal::EntityUID(uid)) => Some(uid.as_ref().clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// An id that an integer id column holds: its decimal form exactly.
fn integer_id(id: &str) -> Option<i64> {
    id.parse::<i64>().ok().filter(|n| n.to_string() == id)
}

fn untranslatable(r: &Residual, why: &str) -> Untranslatable {
    Untranslatable {
        expression: Expr::from(r.clone()).to_string(),
        why: why.to_owned(),
    }
}
