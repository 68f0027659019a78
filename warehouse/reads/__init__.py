"""The read side of the warehouse: how a question is planned (`plan`) before its queries run."""
