"""The team game's text interface as released by Li et al. (multi_LLM_comm, MIT licence): the strings
an LLM agent reads under ``team.prompts: released`` (the default).

The protocol is byte for byte where it is public, so the prompt sentences below are the release's text
(its background prompts, its initial belief, its requests, its observation and result sentences and its
ToM questions, quirks included); the code that assembles them is tomlab's own. Agent ids are written as
the release writes them (``alpha``, ``bravo``, ``charlie``: the configured names in lower case).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SYSTEM = "You are playing a text game with the user."

_HEAD = (
    "Welcome to our interactive text game! In this game, you'll assume the role of a specialist on a search and "
    "rescue team. Alongside two other players, you'll navigate a five-room environment with a mission to defuse "
    "five hidden bombs. Your call sign is {agent_id}"
    "The Map: Imagine a network of rooms represented by a connected graph where each node corresponds to a room, "
    "and the edges between nodes depict hallways. The rooms are numbered 0, 3, 6, 5, and 8. Room 0 is connected "
    "to all other rooms. Room 5 shares a hallway with room 6. Room 3 is linked to room 8. And room 8 is also "
    "connected with room 6. You can only travel to adjacent, directly connected rooms at each turn."
    "The Challenge: Scattered among these rooms are five bombs, each coded with different phases represented by "
    "colors. To defuse them, you'll need to use the correct wire-cutting tools in the correct sequence. There are "
    "one-phase, two-phase, and three-phase bombs, needing 1, 2, or 3 color-coded tool applications in sequence "
    "to disarm. For instance, a bomb with a red-green phase sequence requires the red tool first, then the green "
    "one. Points are awarded based on the number of tools used for defusing a bomb, with each tool use worth 10 "
    "points. Your task is to maximize the team score as soon as possible. The challenge is that the bomb "
    "locations and sequences are unknown to players at the start."
    "Tools: Each player is equipped with two color-coded wire cutters. Player Alpha has red and green tools, "
    "player Bravo wields green and blue, and player Charlie possesses blue and red."
    "Actions: Each round, you can opt to do one of the following: 1) Move to an adjacent room, 2) Inspect a "
    "bomb's phase sequence in your current room, or 3) Apply your wire cutters to a bomb in the current room. "
)
_FORMAT_TAIL = (
    "To move to an adjacent room, say: 'Move to Room X'. To inspect the sequence of a bomb in your current room, "
    "say: 'Inspect Bomb'. To apply a wire cutter tool, say: 'Apply X Tool'. Remember, your replies must adhere "
    "strictly to these rules. Feel free to ask clarifying questions if needed. I'll supply the necessary "
    "information as we progress. Are you ready to take on this explosive challenge?"
)
BACKGROUND = _HEAD + (
    "Communications: In addition to selecting an action to take from the above list, you can also send "
    "communication message texts to both of your teammates in each round. The message text you sent will be "
    "shared with both of your teammates in their observation in the next round. "
    "Observation: While you can only see what's in your current room and read text messages from teammates. "
    "You'll also be informed of the current round number, team score and the current location of your teammates. "
    "Your teammates have the same observability as you. They will not be able to know your action and its "
    "consequences unless you explicitly communicate. "
    "You will be playing as Player {agent_id}. To facilitate our interaction, reply your action selection and "
    "communication messages in this fixed format: Action selection: Your action. Message to Team: \u201cYour "
    "Message\u201d. " + _FORMAT_TAIL
)
"""The background prompt with communication (the release's ``BACKGROUND_PROMPT_NEW``)."""

BACKGROUND_NO_COMM = _HEAD + (
    "Observation: While you can only see what's in your current room. You'll also be informed of the current "
    "round number and team score. Your teammates have the same observability as you. They will not be able to "
    "know your action and its consequences unless you are in the same room. "
    "You will be playing as Player {agent_id}. To facilitate our interaction, reply your action selection in this "
    "fixed format: Action selection: Your action. " + _FORMAT_TAIL
)
"""The background prompt without communication (the release's ``BACKGROUND_PROMPT_NOCOMM``)."""

_BELIEF_HEAD = (
    "Below is your current belief about game state based on your previous observations about the environment and "
    "interactions with your teammates. Your role: You are playing as Player {agent_id}.\n Current round: 0.\n "
    "Total team score: 0.\n Restuls: You moved to Room {initial_node}. In the new room you found Player alpha, "
    "Player bravo, Player charlie, and Bomb {initial_bomb}.\n Room Contents: You are currently in Room "
    "{initial_node} with both of your teammates. In the room you also found bomb {initial_bomb} with unknown "
    "sequence. There is no other bomb in the current room.\n Teammate Locations: Player alpha is in Room "
    "{initial_node}; Player bravo is in Room {initial_node}; Player charlie is in Room {initial_node}.\n Room "
    "connectivity: Room 0 is connected to room 3, 5, 6,8. Room 3 is connected to room 0. Room 5 is connected to "
    "room 0 and 6. Room 6 is connected to room 0 and 8. Room 8 is connected to room 0 and 6.\n Bomb Intel: Bomb "
    "{initial_bomb}: Located in Room {initial_node}. The phase sequence is Unknown. Ohter bomb details currently "
    "unknown.\n"
)
_BELIEF_TOOLS = (
    " Tool inventory: Alpha: Equipped with red and green wire cutters. Bravo: Equipped with green and blue wire "
    "cutters. Charlie: Equipped with red and blue wire cutters.\n Available action options: 1. To move to an "
    "adjacent room, say: 'Move to Room X'. 2. To inspect the sequence of a bomb in your current room, say: "
    "'Inspect Bomb'. 3. To apply a wire cutter tool, say: 'Apply X Tool'. 4."
)
INITIAL_BELIEF = (_BELIEF_HEAD + " Communication messages sent by your teammates: Player alpha: None. Player bravo: "
                  "None. Player charlie: None.\n" + _BELIEF_TOOLS + " To send a message to your teammates, say: "
                  "'Message to Team: \"Your Message\"'.")
"""The initial belief with communication (the release's ``INITIAL_BELIEF``)."""

INITIAL_BELIEF_NO_COMM = _BELIEF_HEAD + _BELIEF_TOOLS
"""The initial belief without communication (the release's ``INITIAL_BELIEF_NOCOMM``)."""

UPDATE_REQUEST = ("Please update your belief state based on the above observation, and send me your results in the "
                  "same format as previously. DO NOT add additional explanations. Return your answer begining with: "
                  "'Below is your current belief'")
BELIEF_ACTION_REQUEST = "Given the above belief state, what is your next action?"
OBSERVATION_ACTION_REQUEST = "Given the above observation, what is your next action?"
NO_MESSAGE_YET = "None"
"""What the communication line shows for an agent that has not replied yet (the release's initial value)."""

_COLOUR_INDEX = {"red": 0, "green": 1, "blue": 2}  # the release's colour enumeration


def agent_id(name: str) -> str:
    """An agent's id as the release writes it (``Alpha`` -> ``alpha``)."""
    return name.lower()


def background(name: str, communication: bool = True) -> str:
    return (BACKGROUND if communication else BACKGROUND_NO_COMM).format(agent_id=agent_id(name))


def initial_belief(name: str, room: int, bomb: int | None, communication: bool = True) -> str:
    """The release's initial belief for the start room and the bomb there (``None`` when there is none: the
    release assumes a bomb in the start room, as every room has one on its map)."""
    text = INITIAL_BELIEF if communication else INITIAL_BELIEF_NO_COMM
    return text.format(agent_id=agent_id(name), initial_node=room, initial_bomb=bomb)


def opening(name: str, belief: bool, room: int, bomb: int | None, communication: bool = True) -> list[dict[str, str]]:
    """The conversation before an agent's first reply: the system message, the background prompt and, with a
    belief state, the initial belief and the action request (without one, round 0's observation follows)."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": background(name, communication)}]
    if belief:
        messages.append({"role": "user", "content": initial_belief(name, room, bomb, communication)
                         + BELIEF_ACTION_REQUEST})
    return messages


def _bombs(bombs: Iterable[int]) -> str:
    return " and ".join(f"Bomb {b}" for b in bombs)


def _people(names: Iterable[str]) -> str:
    return " and ".join(agent_id(n) for n in names)


def _sequence(colours: Sequence[str]) -> str:
    return "-".join(c.capitalize() for c in colours)


def raw_sequence(colours: Sequence[str], palette: Sequence[str] = ("red", "green", "blue")) -> str:
    """A remaining sequence printed as the release prints it in the wrong-colour sentence: the tuple of its
    colour enumeration, e.g. ``(<Color.green: 1>, <Color.blue: 2>)`` (a colour outside the release's three
    is numbered by its place in ``palette``)."""
    items = [f"<Color.{c}: {_COLOUR_INDEX.get(c, list(palette).index(c) if c in palette else -1)}>" for c in colours]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def moved(room: int, found: Sequence[str], bombs: Iterable[int]) -> str:
    """``found``: who was in ``room`` before the mover came in (the mover itself when it stayed)."""
    return f"You moved to Room {room}. In the new room you found {_people(found)}, {_bombs(bombs)}."


def not_adjacent(room: int, here: int) -> str:
    return (f"You can not directly move to Room {room} because it is not adjacent to your current location, Room "
            f"{here}. Consider taking a detour to another room first and then move to your destination.")


def inspected(bomb: int, stages: int, remaining: Sequence[str]) -> str:
    return (f"You inspected Bomb {bomb}. This bomb is a {stages}-stage bomb and its remaining sequence is "
            f"{_sequence(remaining)}.")


def nothing_to_inspect(here: int) -> str:
    return f"There is no bomb in the current current location, Room {here}, for you to inspect."


def applied(colour: str, bomb: int, remaining: Sequence[str]) -> str:
    """A correct cut: defused when nothing remains, else the bomb is active with ``remaining`` to go."""
    if not remaining:
        return f"You applied Tool {colour.capitalize()} to Bomb {bomb}. This bomb is defused successfully."
    return (f"You applied Tool {colour.capitalize()} to Bomb {bomb}. This bomb is active and its remaining "
            f"sequence is {_sequence(remaining)}.")


def wrong_colour(colour: str, bomb: int, remaining: Sequence[str], palette: Sequence[str] = ("red", "green", "blue")) -> str:
    return (f"You can not apply Tool {colour.capitalize()} to Bomb {bomb} because the sequence of this bomb is "
            f"{raw_sequence(remaining, palette)}. You will need to apply other color tool first.")


def nothing_to_defuse(here: int) -> str:
    return f"There is no bomb in your current location, room {here}, for you to defuse."


def no_such_tool(colour: str) -> str:
    return (f"You do not have {colour.capitalize()}. Consider asking your teammates who have this tool to help you "
            "defuse the bomb.")


INVALID = "Invalid action."


def observation(round_: int, score: int, result: str, room: int, here: Sequence[str], bombs: Iterable[int],
                messages: Mapping[str, str] | None) -> str:
    """The release's observation text: round, team score, the result sentence, the room's contents (``here``:
    everyone in it, the agent included, in the order they came in) and, with communication, every agent's
    latest message (``messages``: agent name -> its text; ``None``: no communication line)."""
    text = (f"Your observation is: Round: {round_}. Total team score: {score}. Results: {result} Room contents: "
            f"You are currently in Room {room}. Contents of this room include {_people(here)}, {_bombs(bombs)}. ")
    if messages is not None:
        text += "Communication messages sent by your teammates: " + "".join(
            f'Player {agent_id(a)}: "{m}". ' for a, m in messages.items())
    return text


def reply_message(reply: str) -> str:
    """The message text the release keeps from a reply: what lies between the first pair of straight double
    quotes after the first "Message to Team:" (up to a second one); ``""`` when there is none."""
    marker = "Message to Team:"
    if marker not in reply or '"' not in reply:
        return ""
    quoted = reply.split(marker)[1].split('"')
    return quoted[1] if len(quoted) > 1 else ""


def tom_questions(topic: str, teammate: str, subject: int | None = None) -> dict[str, str]:
    """The release's three questions of one topic, by order: ``room`` (the contents of room ``subject``),
    ``bomb_change`` (bomb ``subject``'s state and sequence changed), ``bomb_defused`` (a bomb phase was just
    defused), ``sequence`` (bomb ``subject``'s sequence)."""
    who = agent_id(teammate)
    lead = f"Based on the observation and previous history, is player {who} aware of the fact that you"
    if topic == "room":
        what = f"the current contents of room {subject}"
        return {"introspection": f"Do you know {what}?", "first_order": f"Does player {who} know {what}?",
                "second_order": f"{lead} know {what}?"}
    if topic == "bomb_change":
        what = f"the state and remaining sequence of bomb {subject}"
        return {"introspection": f"Do you know {what} has been changed?",
                "first_order": f"Does player {who} know {what} has been changed?",
                "second_order": f"{lead} have changed {what}?"}
    if topic == "bomb_defused":
        what = "a bomb phase has just been defused"
        return {"introspection": f"Do you know {what}?", "first_order": f"Does player {who} know {what}?",
                "second_order": f"{lead} know {what}?"}
    if topic == "sequence":
        what = f"the sequence of bomb {subject}"
        return {"introspection": f"Do you know {what}?", "first_order": f"Does player {who} know {what}?",
                "second_order": f"{lead} know {what}?"}
    raise ValueError(f"unknown ToM topic {topic!r}")


@dataclass
class Occupancy:
    """Who is in each room in the order they came in, as the release lists a room's agents (an agent that
    moves, even to the room it is in, leaves its place and joins the end of the list)."""

    rooms: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def start(cls, positions: Mapping[str, int]) -> Occupancy:
        occ = cls()
        for name, room in positions.items():
            occ.rooms.setdefault(room, []).append(name)
        return occ

    def here(self, room: int) -> list[str]:
        return list(self.rooms.get(room, []))

    def move(self, name: str, room: int) -> None:
        for people in self.rooms.values():
            if name in people:
                people.remove(name)
        self.rooms.setdefault(room, []).append(name)
