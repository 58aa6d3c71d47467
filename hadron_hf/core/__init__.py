"""Layer 1, the method: one row's AutoReason tournament as pure async logic over the ``ChatModel`` protocol
(no I/O, clocks, environment or globals).

- ``tournament``: the round loop (draft, critique, B, AB, judges, convergence) over ``RoleModels``;
- ``panel``: drawing judge seats and label orders, asking the judges, the quorum (shared with evaluation);
- ``borda``: reading rankings and turning votes into a round winner;
- ``prompts``: the role prompts.
"""
