-- The tables the default bundle's queries read (sql/mapping.json), with GitLab's names, for
-- SQLite. visibility_level: 0 private, 10 internal, 20 public. Feature access levels:
-- 0 disabled, 10 private, 20 enabled. member_role_permissions holds member_roles.json: one row
-- per role and permission.
CREATE TABLE namespaces (
  id integer PRIMARY KEY,
  parent_id integer REFERENCES namespaces (id),
  type text NOT NULL DEFAULT 'Group',
  visibility_level integer NOT NULL,
  traversal_ids text NOT NULL DEFAULT ''  -- unused by SQLite queries (they walk parent_id)
);

CREATE INDEX index_namespaces_on_parent_id ON namespaces (parent_id);

CREATE TABLE projects (
  id integer PRIMARY KEY,
  namespace_id integer NOT NULL REFERENCES namespaces (id),
  visibility_level integer NOT NULL,
  archived boolean NOT NULL DEFAULT 0
);
CREATE INDEX index_projects_on_namespace_id ON projects (namespace_id);
CREATE INDEX index_projects_on_visibility_level ON projects (visibility_level);

CREATE TABLE project_features (
  project_id integer PRIMARY KEY REFERENCES projects (id),
  repository_access_level integer NOT NULL DEFAULT 20,
  issues_access_level integer NOT NULL DEFAULT 20,
  merge_requests_access_level integer NOT NULL DEFAULT 20,
  builds_access_level integer NOT NULL DEFAULT 20,
  container_registry_access_level integer NOT NULL DEFAULT 20,
  package_registry_access_level integer NOT NULL DEFAULT 20
);
-- A feature's rare levels (disabled, private) are looked up by level.
CREATE INDEX index_project_features_on_repository_access_level ON project_features (repository_access_level, project_id);
CREATE INDEX index_project_features_on_issues_access_level ON project_features (issues_access_level, project_id);
CREATE INDEX index_project_features_on_merge_requests_access_level ON project_features (merge_requests_access_level, project_id);
CREATE INDEX index_project_features_on_builds_access_level ON project_features (builds_access_level, project_id);
CREATE INDEX index_project_features_on_container_registry_access_level ON project_features (container_registry_access_level, project_id);
CREATE INDEX index_project_features_on_package_registry_access_level ON project_features (package_registry_access_level, project_id);

CREATE TABLE project_authorizations (
  user_id integer NOT NULL,
  project_id integer NOT NULL REFERENCES projects (id),
  access_level integer NOT NULL,
  member_role_id integer,
  PRIMARY KEY (user_id, project_id)
);
CREATE INDEX index_project_authorizations_on_project_id ON project_authorizations (project_id);

CREATE TABLE member_role_permissions (
  member_role_id integer NOT NULL,
  permission text NOT NULL,
  PRIMARY KEY (member_role_id, permission)
);

CREATE TABLE ci_job_token_project_scope_links (
  source_project_id integer NOT NULL REFERENCES projects (id),
  target_project_id integer NOT NULL REFERENCES projects (id),
  PRIMARY KEY (target_project_id, source_project_id)
);
