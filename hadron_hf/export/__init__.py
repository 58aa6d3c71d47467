"""Layer 4, exports of a refined dataset to other tools: the original Hadron's rows (``hadron_rows``) and an
``mlx_lm.lora`` data folder (``mlx_lora``). Like the views, they never reach the tournament, the engine or a
backend."""

from hadron_hf.export.hadron_rows import hadron_batch, hadron_row, to_hadron_rows, write_hadron_rows
from hadron_hf.export.mlx_lora import MlxExport, split_rows, write_mlx_dataset

__all__ = ["MlxExport", "hadron_batch", "hadron_row", "split_rows", "to_hadron_rows", "write_hadron_rows",
           "write_mlx_dataset"]
