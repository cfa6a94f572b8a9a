# The Rego twin of what the benchmark asks Arbiter (benches/server): an anonymous caller
# downloading a project's repository archive (GET /api/v4/projects/{id}/repository/archive) is
# allowed when the project is public and its repository feature enabled, as the default
# bundle's visibility and feature rules decide it. The input is Envoy's CheckRequest, as
# opa-envoy-plugin hands it to a policy.
package envoy.authz

import rego.v1

default allow := false

http_request := input.attributes.request.http

segments := split(trim_prefix(http_request.path, "/"), "/")

project_id := segments[3] if {
	http_request.method in {"GET", "HEAD"}
	count(segments) == 6
	segments[0] == "api"
	segments[1] == "v4"
	segments[2] == "projects"
	segments[4] == "repository"
	segments[5] == "archive"
}

allow if {
	not http_request.headers.authorization
	data.users.anonymous.state == "active"
	project := data.projects[project_id]
	project.visibility == "public"
	project.features.repository == "enabled"
}
