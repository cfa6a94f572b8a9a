# frozen_string_literal: true

module Arbiter
  module Rails
    # A request the bridge could not build: no builder for a model, a builder that answered
    # something else than an entity of its type, an ability the bundle does not map.
    class BridgeError < StandardError; end

    # How the host's models become Cedar entities, written once:
    #
    #   Arbiter::Rails.entities.define(User, type: "Gitlab::User") { |user| {uid: ..., attrs: ...} }
    #   Arbiter::Rails.entities.define(Project, type: "Gitlab::Project") do |project, user|
    #     [{uid: ..., attrs: ..., parents: [...], tags: {user.id.to_s => {access_level: 30}}}, *groups]
    #   end
    #
    # A builder gets the record and the user the check is for (a project carries only that
    # user's authorization), and answers an entity Hash, or an Array whose first element is the
    # record's entity and the rest entities it refers to. nil (an anonymous user) is built by
    # the builder defined for NilClass.
    class Entities
      Builder = Struct.new(:type, :block)

      def initialize
        @builders = {}
      end

      def define(klass, type:, &block)
        raise ArgumentError, "define needs a block that builds the entity" unless block

        @builders[klass] = Builder.new(type.to_s, block)
        self
      end

      # The Cedar entity type records of +klass+ (a model class) become.
      def type_for(klass)
        builder_for(klass).type
      end

      # The entity of +record+ first, then those it refers to, built for a check by +user+.
      def build(record, user)
        builder = builder_for(record.class)
        built = builder.block.arity == 1 ? builder.block.call(record) : builder.block.call(record, user)
        entities = built.is_a?(Array) ? built : [built]
        type = Entities.type_of(entities.first)
        unless type == builder.type
          raise BridgeError, "the #{record.class} builder answered an entity of type #{type.inspect}, " \
                             "not #{builder.type}"
        end
        entities
      end

      # An entity Hash's uid, its keys Symbols or Strings.
      def self.uid(entity)
        entity.is_a?(Hash) ? entity[:uid] || entity["uid"] : nil
      end

      # An entity Hash's type.
      def self.type_of(entity)
        uid = uid(entity)
        uid.is_a?(Hash) ? uid[:type] || uid["type"] : nil
      end

      private

      def builder_for(klass)
        klass.ancestors.each do |ancestor|
          builder = @builders[ancestor]
          return builder if builder
        end
        raise BridgeError, "no Arbiter entity builder for #{klass} (Arbiter::Rails.entities.define)"
      end
    end
  end
end
