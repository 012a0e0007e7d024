"""The recovery code: 24 words that open the keyring when the passphrase is forgotten.

The words are 256 random bits written with the BIP-39 English word list (2048 words, 11 bits
each; the last word carries an 8-bit SHA-256 checksum of the rest). The word list and the
checksum come from `mnemonic`, the reference implementation behind BIP-39, so that the
words are the standard ones a person may already know from a hardware wallet, and a
mistyped word is caught by the checksum before any key is derived.

The code is printed once, at `flurry init` or `flurry recovery-code new`, and never stored:
the keyring keeps only what the key derived from it sealed (identity.keyring says how).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from mnemonic import Mnemonic

from identity.errors import IdentityError

ENTROPY_BYTES = 32
WORD_COUNT = 24

# Names the key's one purpose; a key derived for anything else from the same words differs.
_KEK_INFO = b"flurry-keyring v2: recovery code KEK"

_ENGLISH = Mnemonic("english")


class RecoveryCodeInvalid(IdentityError):
    """The words typed are not a recovery code (wrong count, unknown word, failed checksum)."""


@dataclass(frozen=True)
class RecoveryCode:
    """256 bits of entropy and the words that write them. repr never shows either."""

    entropy: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.entropy) != ENTROPY_BYTES:
            raise ValueError(f"a recovery code holds {ENTROPY_BYTES} bytes of entropy")

    @classmethod
    def generate(cls) -> RecoveryCode:
        return cls(os.urandom(ENTROPY_BYTES))

    @classmethod
    def from_words(cls, text: str) -> RecoveryCode:
        """Read the words as a person types them back; raise RecoveryCodeInvalid with the reason.

        Case and spacing do not matter, the numbers printed before each word may be typed too,
        and a word may be shortened to its first four letters (BIP-39 words are unique by their
        first four). Nothing here derives a key: a typo is named before any work is done."""
        words = [
            _ENGLISH.expand_word(token)
            for token in _ENGLISH.normalize_string(text).lower().split()
            if not token.rstrip(".):").isdigit()
        ]
        unknown = [word for word in words if word not in _ENGLISH.wordlist]
        if unknown:
            raise RecoveryCodeInvalid(
                f"{', '.join(repr(w) for w in unknown[:3])} "
                f"{'is' if len(unknown) == 1 else 'are'} not in the recovery word list "
                "(BIP-39 English); check the spelling against the words you wrote down"
            )
        if len(words) != WORD_COUNT:
            raise RecoveryCodeInvalid(
                f"a recovery code has {WORD_COUNT} words; {len(words)} were given"
            )
        try:
            entropy = bytes(_ENGLISH.to_entropy(words))
        except ValueError:
            raise RecoveryCodeInvalid(
                "the recovery code's checksum failed: every word is in the list, but one is "
                "wrong or two are swapped; check them against the words you wrote down"
            ) from None
        return cls(entropy)

    @property
    def words(self) -> list[str]:
        return _ENGLISH.to_mnemonic(self.entropy).split(" ")

    def key_encryption_key(self) -> bytes:
        """The key that seals the keyring's recovery section.

        HKDF-SHA256 (RFC 5869), not Argon2id as for the passphrase: a slow, memory-hard KDF
        is there to make guessing a low-entropy secret expensive. These are 256 uniformly
        random bits, which no one can enumerate however cheap each guess is, so all the KDF
        must do is turn them into a key bound to this one use (the info string); HKDF's
        extract-then-expand does exactly that, and recovery then costs no time at all."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO).derive(
            self.entropy
        )
