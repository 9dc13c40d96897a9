"""Who first-person statements are about: the speaker, or the user when no speaker is named."""

from __future__ import annotations

from dataclasses import dataclass

from persona_server.ports.extractor import USER_SUBJECT

# Speaker values that name a role rather than a person: not emitted as a PERSON entity.
_ROLE_SPEAKERS = frozenset({"user", "me", "human", "customer", "client"})
_AGENT_SPEAKERS = frozenset({"assistant", "system", "bot", "ai", "agent", "model"})


@dataclass(frozen=True, slots=True)
class Subject:
    name: str  # the relation subject: the speaker's name, or USER_SUBJECT
    display: str  # how readable texts start: "Caroline", "The user"
    is_person: bool  # emit the speaker as a PERSON entity

    @property
    def possessive(self) -> str:
        """Mid-sentence possessive: "Caroline's", "the user's"."""
        base = (
            self.display[0].lower() + self.display[1:]
            if self.display.startswith("The ")
            else self.display
        )
        return base + ("'" if base.endswith("s") else "'s")

    @property
    def possessive_start(self) -> str:
        """Sentence-initial possessive: "Caroline's", "The user's"."""
        return self.display + ("'" if self.display.endswith("s") else "'s")

    @staticmethod
    def for_speaker(speaker: str) -> Subject:
        name = " ".join(speaker.split())
        low = name.casefold()
        if not name or low in _ROLE_SPEAKERS:
            return Subject(name=USER_SUBJECT, display="The user", is_person=False)
        if low in _AGENT_SPEAKERS:
            return Subject(name=low, display=f"The {low}", is_person=False)
        return Subject(name=name, display=name, is_person=True)
