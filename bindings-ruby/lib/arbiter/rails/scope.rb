# frozen_string_literal: true

module Arbiter
  module Rails
    # ActiveRecord relations from list queries: the records a user may act on, as one WHERE
    # clause the database runs, exactly what single checks would allow.
    #
    #   Project.arbiter_where(user, :read_project).where(archived: false).order(:id).limit(20)
    #
    # Answered :none, it is the relation's +none+; answered :all, the relation itself. The
    # values are never spliced by Arbiter: they go to ActiveRecord as the SQL's bind values
    # (placeholders it quotes with the connection). Extended onto ActiveRecord::Base by the
    # railtie; called on a relation, it narrows that relation.
    module Scope
      def arbiter_where(user, ability)
        query = Scope.query(self, user, ability)
        case query.kind
        when :none then none
        when :all then all
        else where(*Scope.positional(query))
        end
      end

      class << self
        # The list query for +ability+ on +model+'s records, in the connection's dialect.
        def query(model, user, ability, runtime = Arbiter::Rails.runtime)
          raise BridgeError, "Arbiter::Rails has not booted (Arbiter::Rails.boot!)" unless runtime

          action, resource_type = Bridge.action_of(ability, runtime)
          entities = Arbiter::Rails.entities
          unless entities.type_for(model) == resource_type
            raise BridgeError, "ability #{ability} is checked on #{resource_type}, not on #{model} (#{entities.type_for(model)})"
          end
          principal = entities.build(user, user)
          runtime.engine.query(
            principal: Entities.uid(principal.first),
            action: action,
            resource_type: resource_type,
            context: Arbiter::Rails.settings.context_for(user, ability, nil),
            entities: principal,
            dialect: dialect(model.connection.adapter_name)
          )
        end

        # The SQL with ? placeholders and its values in their order, as ActiveRecord's
        # +where(sql, *values)+ takes them ($n of PostgreSQL's dialect become ?).
        def positional(query)
          return [query.sql, *query.params] unless query.sql.include?("$")

          values = []
          sql = query.sql.gsub(/\$(\d+)/) do
            values << query.params.fetch(Integer(Regexp.last_match(1)) - 1)
            "?"
          end
          [sql, *values]
        end

        def dialect(adapter_name)
          case adapter_name
          when /postgres/i then :postgres
          when /sqlite/i then :sqlite
          else raise BridgeError, "Arbiter writes SQL for PostgreSQL and SQLite, not #{adapter_name}"
          end
        end
      end
    end
  end
end
