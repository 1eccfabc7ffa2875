//! The query bounds and mergeable digests both sides of the wire (a Kindling agent and a query
//! coordinator: the `kindling` CLI or the Grafana plugin) run queries with:
//!
//! - [`guard`]: the bounds both sides run every query within.
//! - [`digest`]: the mergeable sketch behind percentiles computed across agents.
//! - [`keyword_columns`]: column names the parser would take for keywords (`cluster`), quoted.
//! - [`leaf_plan_methods!`]: what every scan's `ExecutionPlan` says the same way on both sides.
#![deny(missing_docs)]

pub mod digest;
pub mod guard;
pub mod keyword_columns;

/// The `ExecutionPlan` methods of a leaf plan (a scan: no children, no expressions of its
/// own), which the agent's chunk scan and the coordinator's agent scan write alike. Use it
/// inside `impl ExecutionPlan for ...`; the crate using it depends on `datafusion`.
#[macro_export]
macro_rules! leaf_plan_methods {
    () => {
        fn children(
            &self,
        ) -> ::std::vec::Vec<&::std::sync::Arc<dyn ::datafusion::physical_plan::ExecutionPlan>> {
            ::std::vec::Vec::new()
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &::std::sync::Arc<dyn ::datafusion::physical_expr::PhysicalExpr>,
            ) -> ::datafusion::common::Result<
                ::datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> ::datafusion::common::Result<::datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(::datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: ::std::sync::Arc<Self>,
            _children: ::std::vec::Vec<
                ::std::sync::Arc<dyn ::datafusion::physical_plan::ExecutionPlan>,
            >,
        ) -> ::datafusion::common::Result<
            ::std::sync::Arc<dyn ::datafusion::physical_plan::ExecutionPlan>,
        > {
            Ok(self)
        }
    };
}
