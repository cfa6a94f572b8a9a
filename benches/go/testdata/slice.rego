# The same slice as testdata/slice.cedar, in Rego.
package gitlab

import rego.v1

role_actions := {
	10: {"read_project", "read_issue", "create_issue"},
	20: {"download_code", "read_merge_request", "read_pipeline"},
	30: {"push_code", "create_merge_request", "create_pipeline"},
	40: {"admin_project", "destroy_package"},
	50: {"remove_project", "archive_project"},
}

content_writes := {"push_code", "create_issue", "create_merge_request", "create_pipeline", "destroy_package"}

repository_actions := {"download_code", "push_code"}

default allow := false

allow if {
	permitted
	not forbidden
}

permitted if {
	some level, actions in role_actions
	input.context.access_level >= level
	input.action in actions
}

forbidden if input.principal.state != "active"

forbidden if {
	input.resource.archived
	input.action in content_writes
}

forbidden if {
	input.resource.features.repository == "disabled"
	input.action in repository_actions
}
