"""Memory banks: one slot per training video per modality, momentum-updated, rank-synchronised."""

from avssl.memory.bank import MemoryBank, MemoryBankMismatchError, average_duplicates

__all__ = ["MemoryBank", "MemoryBankMismatchError", "average_duplicates"]
