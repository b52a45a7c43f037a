"""A seeded generator of BigToM-format stories written for this project.

Every generated row fills the 17 BigToM fields (:data:`tomlab.data.RAW_FIELDS`) in BigToM's style:
a five-sentence story (context, desire, percept, initial belief ``"<Name> believes that X."`` and a
causal event that turns X into Y), the aware / not-aware continuations, the actions that follow,
the belief, desire and action questions with their answers, and an unrelated random event.

Stories come from hand-written scenario templates (a bakery, a greenhouse, a train station, a lab,
a school play, ...).  Each template has slots for the protagonist (name and pronouns), a *variant*
(the objects and states X / Y involved) and a *detail* (a setting detail), all of which appear in
the story text, so every (scenario, name, variant, detail) combination gives a distinct story.
The random event is drawn separately and does not enter the story.

The belief answers always read ``"<Name> believes that <prefix> <state>."`` where only ``<state>``
differs between the aware (Y) and not-aware (X) answers.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from tomlab.data import RAW_FIELDS, _row_problem, write_raw

__all__ = ["SCENARIOS", "NAMES", "generate_stories", "max_stories", "write_generated"]


# ---------------------------------------------------------------------------------------------
# protagonists

_SHE = ("she", "her", "her")
_HE = ("he", "him", "his")

NAMES: tuple[tuple[str, tuple[str, str, str]], ...] = tuple(
    [(n, _SHE) for n in (
        "Amara", "Beatriz", "Chloe", "Dalia", "Elif", "Farah", "Greta", "Hana",
        "Ingrid", "Jia", "Keiko", "Leila", "Maya", "Nadia", "Olga", "Priya",
        "Rosa", "Sofia", "Tamsin", "Uma", "Valeria", "Wanjiru", "Yara", "Zainab",
    )]
    + [(n, _HE) for n in (
        "Arjun", "Bruno", "Chidi", "Diego", "Emil", "Felix", "Goran", "Hiro",
        "Ivan", "Jonas", "Kofi", "Luca", "Mateo", "Nikhil", "Omar", "Pavel",
        "Rafael", "Samir", "Tomas", "Umar", "Viktor", "Wiremu", "Yusuf", "Zoltan",
    )]
)
"""Protagonists: (name, (subject, object, possessive) pronouns)."""


# ---------------------------------------------------------------------------------------------
# scenario templates


@dataclass(frozen=True)
class Scenario:
    """One story template.

    Text templates use ``str.format`` slots: ``{Name}``, the pronouns ``{sub}``, ``{obj}``,
    ``{pos}`` (and capitalised ``{Sub}``, ``{Obj}``, ``{Pos}``), the keys of the chosen variant
    (which must include the states ``x`` and ``y``) and of the chosen detail.  Action phrases are
    written in the base form with a ``^`` before each verb to conjugate (``"^fetch the key"`` gives
    ``"fetches the key"`` and ``"will fetch the key"``).  ``belief`` is the belief prefix: the
    story says ``"<Name> believes that <belief> <x>."``.
    """

    key: str
    context: str
    desire: str
    percept: str
    belief: str
    event: str
    aware: str
    not_aware: str
    act_aware: str
    act_not_aware: str
    desire_question: str
    desire_answer: str
    variants: tuple[Mapping[str, str], ...]
    details: tuple[Mapping[str, str], ...]
    random_events: tuple[tuple[str, str, str], ...]
    desire_answer_not_aware: str | None = None

    @property
    def capacity(self) -> int:
        """How many distinct stories this scenario can give."""
        return len(NAMES) * len(self.variants) * len(self.details)


def _v(**slots: str) -> dict[str, str]:
    return dict(slots)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="bakery",
        context="{Name} runs a small bakery {where}",
        desire="{Name} wants to bake a tray of {item} for the morning rush",
        percept="{Name} checks the white tin by the oven and sees that it is full of {x}",
        belief="the white tin by the oven holds",
        event="While {Name} serves a customer, a new apprentice empties the tin and refills it with {y} by mistake",
        aware="{Name} sees the apprentice pouring {y} into the white tin.",
        not_aware="{Name} does not see the apprentice pouring {y} into the white tin.",
        act_aware="^empty the tin and ^refill it with {x} before baking the {item}",
        act_not_aware="^use the contents of the white tin to bake the {item}",
        desire_question="Does {Name} want to bake the {item} with {x} or with {y}?",
        desire_answer="{Name} wants to bake the {item} with {x}.",
        variants=(
            _v(x="sugar", y="salt", item="sweet buns"),
            _v(x="cinnamon", y="chili powder", item="cinnamon rolls"),
            _v(x="cocoa powder", y="instant coffee", item="chocolate muffins"),
        ),
        details=(_v(where="on a quiet corner of the old town"), _v(where="next to the tram depot"),
                 _v(where="inside a busy market hall")),
        random_events=(
            ("A delivery van honks twice in the street outside.", "{Name} hears the delivery van honking.",
             "{Name} does not hear the delivery van honking."),
            ("A pigeon lands on the bakery's front window ledge.", "{Name} notices the pigeon on the ledge.",
             "{Name} does not notice the pigeon on the ledge."),
        ),
    ),
    Scenario(
        key="greenhouse",
        context="{Name} looks after the plants in a greenhouse {where}",
        desire="{Name} wants to keep the {plant} well watered through the hot afternoon",
        percept="{Name} checks the control panel and sees that the sprinkler over the {plant} is switched off",
        belief="the sprinkler over the {plant} is switched",
        event="A timer fault switches the sprinkler on, and it starts soaking the {plant}",
        aware="{Name} sees water spraying over the {plant}.",
        not_aware="{Name} does not see the water spraying over the {plant}.",
        act_aware="^leave the {plant} alone because they are already being watered",
        act_not_aware="^fill a watering can and ^water the {plant} by hand",
        desire_question="Does {Name} want the {plant} to be watered or left dry?",
        desire_answer="{Name} wants the {plant} to be watered.",
        variants=(
            _v(x="off", y="on", plant="tomato seedlings"),
            _v(x="off", y="on", plant="orchids"),
            _v(x="off", y="on", plant="young lettuces"),
            _v(x="off", y="on", plant="chili plants"),
        ),
        details=(_v(where="at the edge of a botanical garden"), _v(where="on a family farm"),
                 _v(where="behind a university campus")),
        random_events=(
            ("A bumblebee flies in through the greenhouse door.", "{Name} notices the bumblebee buzzing inside.",
             "{Name} does not notice the bumblebee buzzing inside."),
            ("A delivery of empty flower pots is left by the gate.", "{Name} sees the stack of flower pots by the gate.",
             "{Name} does not see the stack of flower pots by the gate."),
        ),
    ),
    Scenario(
        key="train_station",
        context="{Name} is waiting at the central station for the evening train to {city}",
        desire="{Name} wants to catch that train to get to {city} tonight",
        percept="The departure board shows that the train to {city} leaves from platform {x}",
        belief="the train to {city} leaves from platform",
        event="Ten minutes before departure, staff move the train to platform {y} because of track works",
        aware="{Name} sees the departure board change to platform {y}.",
        not_aware="{Name} does not see the departure board change.",
        act_aware="^walk over to platform {y}",
        act_not_aware="^wait on platform {x} for the train",
        desire_question="Does {Name} want to catch the train to {city}?",
        desire_answer="{Name} wants to catch the train to {city}.",
        variants=(_v(x="four", y="nine"), _v(x="two", y="seven"), _v(x="three", y="eleven")),
        details=(_v(city="Bergen"), _v(city="Porto"), _v(city="Krakow"), _v(city="Turin")),
        random_events=(
            ("A busker starts playing the accordion in the station hall.", "{Name} hears the accordion music.",
             "{Name} does not hear the accordion music."),
            ("A child drops a red balloon that floats up to the station roof.", "{Name} sees the red balloon drifting up.",
             "{Name} does not see the red balloon drifting up."),
        ),
    ),
    Scenario(
        key="lab",
        context="{Name} is a scientist working late in {lab}",
        desire="{Name} wants to keep a batch of {sample} cold until the experiment tomorrow",
        percept="{Name} puts the {sample} in the lab fridge and sees the green light showing that it is cooling",
        belief="the lab fridge is",
        event="During the night, a power surge trips the fridge and it stops cooling",
        aware="{Name} gets an alarm message on {pos} phone about the fridge.",
        not_aware="{Name} does not get any message about the fridge.",
        act_aware="^rush back to move the {sample} into the backup fridge",
        act_not_aware="^leave the {sample} in the lab fridge overnight",
        desire_question="Does {Name} want to keep the {sample} cold?",
        desire_answer="{Name} wants to keep the {sample} cold.",
        variants=(
            _v(x="cold", y="warm", sample="enzyme samples"),
            _v(x="cold", y="warm", sample="bacterial cultures"),
            _v(x="cold", y="warm", sample="plasma samples"),
        ),
        details=(_v(lab="a university lab"), _v(lab="a hospital research lab"), _v(lab="a small biotech lab")),
        random_events=(
            ("A cleaner starts vacuuming the corridor outside the lab.", "{Name} hears the vacuum cleaner in the corridor.",
             "{Name} does not hear the vacuum cleaner in the corridor."),
            ("A moth flutters around the lamp above the lab bench.", "{Name} notices the moth around the lamp.",
             "{Name} does not notice the moth around the lamp."),
        ),
    ),
    Scenario(
        key="school_play",
        context="{Name} is directing the school play at {school}",
        desire="{Name} wants the {prop} to be on stage for the opening scene",
        percept="Before the show, {Name} places the {prop} on the left side of the stage",
        belief="the {prop} is",
        event="During the warm-up, a stagehand carries the {prop} back to the prop room",
        aware="{Name} sees the stagehand carrying the {prop} away.",
        not_aware="{Name} does not see the stagehand carrying the {prop} away.",
        act_aware="^ask the stagehand to bring the {prop} back onto the stage",
        act_not_aware="^signal for the curtain to open for the opening scene",
        desire_question="Does {Name} want the {prop} on stage or in the prop room?",
        desire_answer="{Name} wants the {prop} on stage.",
        variants=(
            _v(x="on the stage", y="in the prop room", prop="wooden throne"),
            _v(x="on the stage", y="in the prop room", prop="painted cardboard moon"),
            _v(x="on the stage", y="in the prop room", prop="old treasure chest"),
        ),
        details=(_v(school="Maple Hill primary school"), _v(school="Riverside middle school"),
                 _v(school="the local drama school")),
        random_events=(
            ("A parent in the audience sneezes loudly.", "{Name} hears the loud sneeze from the audience.",
             "{Name} does not hear the loud sneeze from the audience."),
            ("One of the hall lights flickers for a moment.", "{Name} notices the flickering light.",
             "{Name} does not notice the flickering light."),
        ),
    ),
    Scenario(
        key="library",
        context="{Name} works as a librarian at {library}",
        desire="{Name} wants to lend a patron the only copy of {book}",
        percept="{Name} saw the book sitting on the returns cart an hour ago",
        belief="the only copy of {book} is",
        event="A colleague spots a torn page and takes the book to the repair room",
        aware="{Name} sees the colleague carrying the book to the repair room.",
        not_aware="{Name} does not see the colleague carrying the book away.",
        act_aware="^go to the repair room to fetch the book",
        act_not_aware="^go to the returns cart to fetch the book",
        desire_question="Does {Name} want to lend the patron {book}?",
        desire_answer="{Name} wants to lend the patron {book}.",
        variants=(
            _v(x="on the returns cart", y="in the repair room", book="a rare atlas"),
            _v(x="on the returns cart", y="in the repair room", book="a signed poetry collection"),
            _v(x="on the returns cart", y="in the repair room", book="an old sailing manual"),
        ),
        details=(_v(library="the city library"), _v(library="a village library"),
                 _v(library="a university library")),
        random_events=(
            ("A phone rings at the information desk.", "{Name} hears the phone ringing.",
             "{Name} does not hear the phone ringing."),
            ("A toddler pulls a picture book off a low shelf.", "{Name} sees the toddler with the picture book.",
             "{Name} does not see the toddler with the picture book."),
        ),
    ),
    Scenario(
        key="car_park",
        context="{Name} drives into town to go to {occasion}",
        desire="{Name} wants to drive home straight after the {short}",
        percept="{Name} parks {pos} car in a multi-storey car park and reads the sign saying level {level}",
        belief="{pos} car is",
        event="Because the bay was reserved for a wedding party, a tow truck takes the car to the city tow yard",
        aware="{Name} gets a text from the car park saying that the car was towed.",
        not_aware="{Name} does not get any message about the car.",
        act_aware="^take a taxi to the city tow yard",
        act_not_aware="^take the lift up to level {level}",
        desire_question="Does {Name} want to drive home after the {short}?",
        desire_answer="{Name} wants to drive home after the {short}.",
        variants=(
            _v(x="on level three", y="at the city tow yard", level="three"),
            _v(x="on level five", y="at the city tow yard", level="five"),
            _v(x="on level seven", y="at the city tow yard", level="seven"),
        ),
        details=(_v(occasion="a concert", short="concert"), _v(occasion="a football match", short="match"),
                 _v(occasion="a late film", short="film")),
        random_events=(
            ("A car alarm goes off on the floor below.", "{Name} hears the car alarm.",
             "{Name} does not hear the car alarm."),
            ("A street sweeper rolls past the car park entrance.", "{Name} notices the street sweeper.",
             "{Name} does not notice the street sweeper."),
        ),
    ),
    Scenario(
        key="restaurant_kitchen",
        context="{Name} is a cook at a busy {cuisine} restaurant",
        desire="{Name} wants to serve a {dish} that is slowly and gently roasted",
        percept="{Name} puts the {dish} in the oven and sets the dial to low heat",
        belief="the oven is set to",
        event="A kitchen porter bumps the dial while stacking trays and turns the oven up to high heat",
        aware="{Name} sees the porter bump the oven dial.",
        not_aware="{Name} does not see the porter bump the oven dial.",
        act_aware="^turn the dial back down and ^check the {dish}",
        act_not_aware="^leave the {dish} in the oven for the full cooking time",
        desire_question="Does {Name} want to roast the {dish} slowly or quickly?",
        desire_answer="{Name} wants to roast the {dish} slowly.",
        variants=(
            _v(x="low heat", y="high heat", dish="lamb shoulder"),
            _v(x="low heat", y="high heat", dish="whole chicken"),
            _v(x="low heat", y="high heat", dish="pork belly"),
        ),
        details=(_v(cuisine="Italian"), _v(cuisine="Lebanese"), _v(cuisine="Portuguese")),
        random_events=(
            ("A waiter drops a stack of menus near the kitchen door.", "{Name} sees the menus scattered by the door.",
             "{Name} does not see the menus scattered by the door."),
            ("The radio in the kitchen switches to a new song.", "{Name} hears the new song on the radio.",
             "{Name} does not hear the new song on the radio."),
        ),
    ),
    Scenario(
        key="hospital_ward",
        context="{Name} is a nurse on the night shift at {hospital}",
        desire="{Name} wants to give the patient in room {room} the right evening medicine",
        percept="{Name} reads the chart, which says the patient should get {x}",
        belief="the patient in room {room} should get",
        event="After a new test result, the doctor on call changes the prescription to {y}",
        aware="{Name} reads the doctor's updated note on the chart.",
        not_aware="{Name} does not read the doctor's updated note on the chart.",
        act_aware="^bring {y} to room {room}",
        act_not_aware="^bring {x} to room {room}",
        desire_question="Does {Name} want to give the patient the right medicine?",
        desire_answer="{Name} wants to give the patient the right medicine.",
        variants=(
            _v(x="the blue tablets", y="the white tablets"),
            _v(x="the liquid syrup", y="the small capsules"),
            _v(x="two tablets", y="one tablet"),
        ),
        details=(_v(hospital="the county hospital", room="twelve"), _v(hospital="a children's hospital", room="seven"),
                 _v(hospital="a small clinic", room="twenty")),
        random_events=(
            ("A monitor beeps softly in the next room.", "{Name} hears the monitor beeping.",
             "{Name} does not hear the monitor beeping."),
            ("A visitor leaves a bunch of flowers at the ward desk.", "{Name} sees the flowers at the desk.",
             "{Name} does not see the flowers at the desk."),
        ),
    ),
    Scenario(
        key="beach",
        context="{Name} is spending a summer afternoon at a beach {where}",
        desire="{Name} wants to swim out to {target}",
        percept="{Name} sees a green flag on the lifeguard tower, which means the sea is calm",
        belief="the sea is",
        event="A sudden squall whips up strong waves, and the lifeguard swaps the green flag for a red one",
        aware="{Name} sees the lifeguard raising the red flag.",
        not_aware="{Name} does not see the lifeguard raising the red flag.",
        act_aware="^stay on the sand and ^read a book",
        act_not_aware="^wade into the water to swim to {target}",
        desire_question="Does {Name} want to swim out to {target}?",
        desire_answer="{Name} wants to swim out to {target}.",
        variants=(
            _v(x="calm", y="rough", target="the floating platform"),
            _v(x="calm", y="rough", target="the rocky islet"),
            _v(x="calm", y="rough", target="the yellow marker buoy"),
        ),
        details=(_v(where="near a fishing village"), _v(where="below tall white cliffs"), _v(where="beside a busy marina")),
        random_events=(
            ("A seagull steals a sandwich from a nearby picnic.", "{Name} sees the seagull grabbing the sandwich.",
             "{Name} does not see the seagull grabbing the sandwich."),
            ("An ice cream van plays its tune on the promenade.", "{Name} hears the ice cream van's tune.",
             "{Name} does not hear the ice cream van's tune."),
        ),
    ),
    Scenario(
        key="garden_shed",
        context="{Name} is tidying {pos} garden on a {day} morning",
        desire="{Name} wants to trim the hedge with {pos} {tool}",
        percept="{Name} remembers putting the {tool} away in the shed yesterday",
        belief="the {tool} is",
        event="While {Name} has breakfast, {pos} teenage son lends the {tool} to the neighbour",
        aware="{Name} sees {pos} son handing the {tool} over the fence.",
        not_aware="{Name} does not see {pos} son handing the {tool} over the fence.",
        act_aware="^knock on the neighbour's door to ask for the {tool}",
        act_not_aware="^walk down to the shed to get the {tool}",
        desire_question="Does {Name} want to trim the hedge?",
        desire_answer="{Name} wants to trim the hedge.",
        variants=(
            _v(x="in the shed", y="at the neighbour's house", tool="electric hedge trimmer"),
            _v(x="in the shed", y="at the neighbour's house", tool="long garden shears"),
            _v(x="in the shed", y="at the neighbour's house", tool="cordless hedge cutter"),
        ),
        details=(_v(day="Saturday"), _v(day="Sunday"), _v(day="bright spring")),
        random_events=(
            ("A cat jumps onto the garden wall and sits there.", "{Name} notices the cat on the wall.",
             "{Name} does not notice the cat on the wall."),
            ("Church bells ring somewhere in the distance.", "{Name} hears the church bells.",
             "{Name} does not hear the church bells."),
        ),
    ),
    Scenario(
        key="museum",
        context="{Name} works as a guide at {museum}",
        desire="{Name} wants to show a school group the {artifact}",
        percept="{Name} saw the {artifact} on display in the main hall this morning",
        belief="the {artifact} is",
        event="At noon, a conservator moves the {artifact} to the workshop for cleaning",
        aware="{Name} reads the notice about the move on the staff board.",
        not_aware="{Name} does not read the notice on the staff board.",
        act_aware="^tell the group that the {artifact} is away for cleaning",
        act_not_aware="^lead the group to the main hall to see the {artifact}",
        desire_question="Does {Name} want to show the group the {artifact}?",
        desire_answer="{Name} wants to show the group the {artifact}.",
        variants=(
            _v(x="in the main hall", y="in the workshop", artifact="Roman mosaic"),
            _v(x="in the main hall", y="in the workshop", artifact="bronze helmet"),
            _v(x="in the main hall", y="in the workshop", artifact="carved jade mask"),
        ),
        details=(_v(museum="the city history museum"), _v(museum="a maritime museum"), _v(museum="a small folk museum")),
        random_events=(
            ("A visitor's umbrella falls over in the cloakroom.", "{Name} hears the umbrella clatter to the floor.",
             "{Name} does not hear the umbrella clatter to the floor."),
            ("A photographer sets up a tripod by the entrance.", "{Name} notices the photographer's tripod.",
             "{Name} does not notice the photographer's tripod."),
        ),
    ),
    Scenario(
        key="office_meeting",
        context="{Name} works as an assistant at {firm}",
        desire="{Name} wants to set up the slides for the {meeting} before noon",
        percept="The shared calendar shows that the {meeting} is booked in the {x}",
        belief="the {meeting} is in the",
        event="The manager moves the {meeting} to the {y} because the projector in the {x} is broken",
        aware="{Name} gets a calendar alert about the room change.",
        not_aware="{Name} does not get the calendar alert about the room change.",
        act_aware="^set up the slides in the {y}",
        act_not_aware="^set up the slides in the {x}",
        desire_question="Does {Name} want to set up the slides for the {meeting}?",
        desire_answer="{Name} wants to set up the slides for the {meeting}.",
        variants=(_v(x="Willow room", y="Cedar room"), _v(x="Harbour room", y="Summit room"),
                  _v(x="blue room", y="green room")),
        details=(_v(firm="a law firm", meeting="budget review"), _v(firm="a design studio", meeting="client pitch"),
                 _v(firm="an insurance company", meeting="team workshop")),
        random_events=(
            ("The coffee machine in the kitchen starts hissing loudly.", "{Name} hears the coffee machine hissing.",
             "{Name} does not hear the coffee machine hissing."),
            ("A courier leaves a small box at reception.", "{Name} sees the box at reception.",
             "{Name} does not see the box at reception."),
        ),
    ),
    Scenario(
        key="hen_farm",
        context="{Name} keeps {birds} on a small farm {where}",
        desire="{Name} wants to keep the {birds} safe from foxes overnight",
        percept="At dusk, {Name} shuts the coop gate and hears the latch click",
        belief="the coop gate is",
        event="During the night, a strong gust shakes the latch loose and the gate swings open",
        aware="{Name} hears the gate banging in the wind.",
        not_aware="{Name} does not hear the gate banging in the wind.",
        act_aware="^go out with a torch to shut the gate and ^count the {birds}",
        act_not_aware="^stay in bed until morning",
        desire_question="Does {Name} want to keep the {birds} safe?",
        desire_answer="{Name} wants to keep the {birds} safe.",
        variants=(_v(x="shut", y="open", birds="hens"), _v(x="shut", y="open", birds="ducks"),
                  _v(x="shut", y="open", birds="geese")),
        details=(_v(where="in the hills"), _v(where="beside a lake"), _v(where="near the coast")),
        random_events=(
            ("An owl hoots from the old oak tree.", "{Name} hears the owl hooting.",
             "{Name} does not hear the owl hooting."),
            ("A shooting star crosses the sky above the farm.", "{Name} sees the shooting star.",
             "{Name} does not see the shooting star."),
        ),
    ),
    Scenario(
        key="orchestra",
        context="{Name} plays the {instrument} in {group}",
        desire="{Name} wants to play tonight's concert on a well tuned {instrument}",
        percept="{Name} tunes the {instrument} carefully and leaves it on its stand in the green room",
        belief="the {instrument} is",
        event="A cleaner knocks the {instrument} off its stand, and the strings go badly out of tune",
        aware="{Name} sees the cleaner lifting the {instrument} off the floor.",
        not_aware="{Name} does not see the cleaner lifting the {instrument} off the floor.",
        act_aware="^retune the {instrument} before going on stage",
        act_not_aware="^walk on stage and ^start playing without checking the tuning",
        desire_question="Does {Name} want to play on a tuned {instrument}?",
        desire_answer="{Name} wants to play on a tuned {instrument}.",
        variants=(_v(x="in tune", y="out of tune", instrument="violin"),
                  _v(x="in tune", y="out of tune", instrument="cello"),
                  _v(x="in tune", y="out of tune", instrument="viola")),
        details=(_v(group="a community orchestra"), _v(group="a university orchestra"), _v(group="a touring string quartet")),
        random_events=(
            ("Someone in the corridor practises a trumpet scale.", "{Name} hears the trumpet scale.",
             "{Name} does not hear the trumpet scale."),
            ("A stage manager pins a new poster on the notice board.", "{Name} notices the new poster.",
             "{Name} does not notice the new poster."),
        ),
    ),
    Scenario(
        key="flat_dinner",
        context="{Name} is cooking dinner for friends at {pos} flat to celebrate {occasion}",
        desire="{Name} wants to make a {dish} that needs a carton of fresh cream",
        percept="{Name} opened the fridge that morning and saw a full carton of cream",
        belief="the carton of cream in the fridge is",
        event="In the afternoon, {pos} flatmate uses up all the cream in a milkshake and puts the empty carton back",
        aware="{Name} sees {pos} flatmate making the milkshake with the cream.",
        not_aware="{Name} does not see {pos} flatmate making the milkshake.",
        act_aware="^go to the corner shop to buy more cream",
        act_not_aware="^start cooking the {dish} without going shopping",
        desire_question="Does {Name} want to make the {dish}?",
        desire_answer="{Name} wants to make the {dish}.",
        variants=(_v(x="full", y="empty", dish="mushroom pasta"), _v(x="full", y="empty", dish="potato gratin"),
                  _v(x="full", y="empty", dish="chicken korma")),
        details=(_v(occasion="a birthday"), _v(occasion="a new job"), _v(occasion="the end of exams")),
        random_events=(
            ("A neighbour starts drilling a hole in the wall next door.", "{Name} hears the drilling next door.",
             "{Name} does not hear the drilling next door."),
            ("A leaflet for a pizza place is pushed under the door.", "{Name} notices the leaflet under the door.",
             "{Name} does not notice the leaflet under the door."),
        ),
    ),
    Scenario(
        key="mountain_trail",
        context="{Name} is on a hiking holiday in {range}",
        desire="{Name} wants to reach the summit by the {route}",
        percept="At the trailhead, {Name} reads a sign saying that the {route} is open",
        belief="the {route} is",
        event="An hour later, a rockfall blocks the {route} and rangers close it",
        aware="{Name} sees the rangers putting up a closure sign.",
        not_aware="{Name} does not see the rangers putting up the closure sign.",
        act_aware="^take the longer valley path instead",
        act_not_aware="^head straight for the {route}",
        desire_question="Does {Name} want to reach the summit?",
        desire_answer="{Name} wants to reach the summit.",
        variants=(_v(x="open", y="closed", route="ridge trail"), _v(x="open", y="closed", route="north gully path"),
                  _v(x="open", y="closed", route="old mule track")),
        details=(_v(range="the Pyrenees"), _v(range="the Tatra mountains"), _v(range="the Scottish Highlands")),
        random_events=(
            ("A herd of goats crosses a meadow far below.", "{Name} sees the goats in the meadow.",
             "{Name} does not see the goats in the meadow."),
            ("A small plane flies low over the valley.", "{Name} hears the small plane.",
             "{Name} does not hear the small plane."),
        ),
    ),
    Scenario(
        key="parcel",
        context="{Name} is waiting {where} for a parcel with a new {item}",
        desire="{Name} wants to have the {item} ready for a trip at the weekend",
        percept="The tracking page says that the parcel will arrive today",
        belief="the parcel will arrive",
        event="The courier's van breaks down, and the delivery is pushed back to next week",
        aware="{Name} checks the tracking page again and sees the new date.",
        not_aware="{Name} does not check the tracking page again.",
        act_aware="^borrow a {item} from a friend for the weekend",
        act_not_aware="^stay put all afternoon waiting for the courier",
        desire_question="Does {Name} want to have the {item} for the weekend?",
        desire_answer="{Name} wants to have the {item} for the weekend.",
        variants=(_v(x="today", y="next week", item="tent"), _v(x="today", y="next week", item="camera"),
                  _v(x="today", y="next week", item="sleeping bag")),
        details=(_v(where="in {pos} flat"), _v(where="at {pos} cottage"), _v(where="at {pos} office")),
        random_events=(
            ("A dog barks at the postman across the street.", "{Name} hears the dog barking.",
             "{Name} does not hear the dog barking."),
            ("It starts to drizzle outside the window.", "{Name} notices the drizzle.",
             "{Name} does not notice the drizzle."),
        ),
    ),
    Scenario(
        key="hotel",
        context="{Name} works at the front desk of a hotel {where}",
        desire="{Name} wants to give a late guest the key to a clean and ready room",
        percept="The booking system shows {Name} that room {room} has been cleaned",
        belief="room {room} is",
        event="While fixing a tap, a maintenance worker floods the bathroom of room {room}",
        aware="{Name} takes a call from the maintenance worker about the flood.",
        not_aware="{Name} does not take the call from the maintenance worker.",
        act_aware="^give the guest the key to a different room",
        act_not_aware="^give the guest the key to room {room}",
        desire_question="Does {Name} want to give the guest a ready room?",
        desire_answer="{Name} wants to give the guest a ready room.",
        variants=(_v(x="ready for guests", y="flooded", room="twelve"), _v(x="ready for guests", y="flooded", room="forty"),
                  _v(x="ready for guests", y="flooded", room="two hundred and six")),
        details=(_v(where="by the harbour"), _v(where="near the airport"), _v(where="in the old town")),
        random_events=(
            ("A tour bus pulls up outside the hotel entrance.", "{Name} sees the tour bus outside.",
             "{Name} does not see the tour bus outside."),
            ("The lobby clock chimes eleven times.", "{Name} hears the lobby clock chiming.",
             "{Name} does not hear the lobby clock chiming."),
        ),
    ),
    Scenario(
        key="garage",
        context="{Name} is a mechanic at a garage {where}",
        desire="{Name} wants to return a customer's repaired {vehicle} by the evening",
        percept="{Name} finishes fixing the brakes and parks the {vehicle} in bay {x}",
        belief="the {vehicle} is in bay",
        event="A colleague moves the {vehicle} to bay {y} to make room for a lorry",
        aware="{Name} sees the colleague driving the {vehicle} across the yard.",
        not_aware="{Name} does not see the colleague moving the {vehicle}.",
        act_aware="^walk to bay {y} to collect the {vehicle}",
        act_not_aware="^walk to bay {x} to collect the {vehicle}",
        desire_question="Does {Name} want to hand the {vehicle} back to the customer?",
        desire_answer="{Name} wants to hand the {vehicle} back to the customer.",
        variants=(_v(x="one", y="four"), _v(x="two", y="six"), _v(x="three", y="five")),
        details=(_v(where="on the edge of town", vehicle="van"), _v(where="behind the petrol station", vehicle="hatchback"),
                 _v(where="in an old railway arch", vehicle="motorbike")),
        random_events=(
            ("A radio in the workshop plays the traffic news.", "{Name} hears the traffic news on the radio.",
             "{Name} does not hear the traffic news on the radio."),
            ("A sparrow hops across the workshop floor.", "{Name} notices the sparrow on the floor.",
             "{Name} does not notice the sparrow on the floor."),
        ),
    ),
    Scenario(
        key="zoo",
        context="{Name} is a keeper at {zoo}",
        desire="{Name} wants to clean the outer yard while the {animal} is shut away",
        percept="{Name} sees the {animal} resting in the inner enclosure with the sliding door closed",
        belief="the {animal} is",
        event="Another keeper opens the sliding door, and the {animal} wanders out into the outer yard",
        aware="{Name} sees the {animal} walking out through the open door.",
        not_aware="{Name} does not see the {animal} walking out through the door.",
        act_aware="^wait outside the yard until the {animal} is moved back",
        act_not_aware="^unlock the gate and ^step into the outer yard with a broom",
        desire_question="Does {Name} want to clean the yard while the {animal} is shut away?",
        desire_answer="{Name} wants to clean the yard while the {animal} is shut away.",
        variants=(_v(x="in the inner enclosure", y="in the outer yard", animal="tiger"),
                  _v(x="in the inner enclosure", y="in the outer yard", animal="brown bear"),
                  _v(x="in the inner enclosure", y="in the outer yard", animal="rhino")),
        details=(_v(zoo="the city zoo"), _v(zoo="a wildlife park"), _v(zoo="a large safari park")),
        random_events=(
            ("A peacock spreads its tail on the visitor path.", "{Name} notices the peacock's tail.",
             "{Name} does not notice the peacock's tail."),
            ("A school group cheers at the sea lion show nearby.", "{Name} hears the cheering at the show.",
             "{Name} does not hear the cheering at the show."),
        ),
    ),
    Scenario(
        key="exam_papers",
        context="{Name} teaches {subject} at a secondary school",
        desire="{Name} wants to hand out the sealed exam papers at nine sharp",
        percept="{Name} locks the exam papers in the {place} before lunch",
        belief="the exam papers are in",
        event="The head teacher takes the papers out and puts them in the office safe for safekeeping",
        aware="{Name} sees the head teacher carrying the papers to the office.",
        not_aware="{Name} does not see the head teacher taking the papers.",
        act_aware="^go to the office to collect the papers from the safe",
        act_not_aware="^open the {place} to get the papers",
        desire_question="Does {Name} want to hand out the exam papers on time?",
        desire_answer="{Name} wants to hand out the exam papers on time.",
        variants=(_v(x="the {place}", y="the office safe", place="top drawer of {pos} desk"),
                  _v(x="the {place}", y="the office safe", place="grey filing cabinet"),
                  _v(x="the {place}", y="the office safe", place="cupboard behind {pos} desk")),
        details=(_v(subject="history"), _v(subject="physics"), _v(subject="geography"), _v(subject="music")),
        random_events=(
            ("A fire engine drives past the school with its siren on.", "{Name} hears the fire engine's siren.",
             "{Name} does not hear the fire engine's siren."),
            ("A student's paper plane lands on the corridor floor.", "{Name} notices the paper plane.",
             "{Name} does not notice the paper plane."),
        ),
    ),
    Scenario(
        key="marathon",
        context="{Name} is running in the city marathon in {city}",
        desire="{Name} wants to refill {pos} water bottle at the first water station",
        percept="The race guide says that the first water station is at kilometre {x}",
        belief="the first water station is at kilometre",
        event="On race morning, organisers move the water station to kilometre {y} because of road works",
        aware="{Name} hears the announcement about the moved station at the start line.",
        not_aware="{Name} does not hear the announcement at the start line.",
        act_aware="^save some water until kilometre {y}",
        act_not_aware="^drink the last of {pos} water before kilometre {x}",
        desire_question="Does {Name} want to refill {pos} water bottle?",
        desire_answer="{Name} wants to refill {pos} water bottle.",
        variants=(_v(x="ten", y="twelve"), _v(x="eight", y="eleven"), _v(x="five", y="nine")),
        details=(_v(city="Rotterdam"), _v(city="Valencia"), _v(city="Nairobi"), _v(city="Seoul")),
        random_events=(
            ("A brass band starts playing by the side of the road.", "{Name} hears the brass band.",
             "{Name} does not hear the brass band."),
            ("A runner in a dinosaur costume overtakes the crowd.", "{Name} sees the runner in the dinosaur costume.",
             "{Name} does not see the runner in the dinosaur costume."),
        ),
    ),
    Scenario(
        key="camping",
        context="{Name} is camping with friends beside {lake}",
        desire="{Name} wants to {meal} on the camping stove for dinner",
        percept="{Name} shakes the gas canister and feels that it is full",
        belief="the gas canister is",
        event="While {Name} gathers firewood, a friend uses up all the gas boiling water for tea",
        aware="{Name} sees the friend boiling pot after pot of water.",
        not_aware="{Name} does not see the friend using up the gas.",
        act_aware="^build a campfire to cook dinner instead",
        act_not_aware="^set up the stove to cook dinner",
        desire_question="Does {Name} want to {meal} for dinner?",
        desire_answer="{Name} wants to {meal} for dinner.",
        variants=(_v(x="full", y="empty", meal="cook pasta"), _v(x="full", y="empty", meal="fry some fish"),
                  _v(x="full", y="empty", meal="heat a pot of soup")),
        details=(_v(lake="a mountain lake"), _v(lake="a quiet forest lake"), _v(lake="a wide river bend")),
        random_events=(
            ("A heron lands on a rock at the water's edge.", "{Name} sees the heron on the rock.",
             "{Name} does not see the heron on the rock."),
            ("A canoe glides past on the far side of the water.", "{Name} notices the canoe.",
             "{Name} does not notice the canoe."),
        ),
    ),
    Scenario(
        key="wedding_photos",
        context="{Name} is the photographer at a wedding {where}",
        desire="{Name} wants to photograph the couple during the {moment}",
        percept="{Name} puts a fresh memory card in the camera and checks that it is empty",
        belief="the memory card in the camera is",
        event="While {Name} talks to the guests, a cousin borrows the camera and fills the card with videos",
        aware="{Name} sees the cousin filming with the camera.",
        not_aware="{Name} does not see the cousin filming with the camera.",
        act_aware="^swap in a spare memory card before the {moment}",
        act_not_aware="^start shooting the {moment} with the card already in the camera",
        desire_question="Does {Name} want to photograph the {moment}?",
        desire_answer="{Name} wants to photograph the {moment}.",
        variants=(_v(x="empty", y="full", moment="first dance"), _v(x="empty", y="full", moment="cake cutting"),
                  _v(x="empty", y="full", moment="exchange of rings")),
        details=(_v(where="at a vineyard"), _v(where="in a castle garden"), _v(where="on a clifftop lawn")),
        random_events=(
            ("A waiter pops the cork of a champagne bottle.", "{Name} hears the cork pop.",
             "{Name} does not hear the cork pop."),
            ("A gust of wind lifts a napkin off a table.", "{Name} sees the napkin blowing away.",
             "{Name} does not see the napkin blowing away."),
        ),
    ),
    Scenario(
        key="airport_gate",
        context="{Name} is flying to {city} for a conference",
        desire="{Name} wants to board {pos} flight to {city} on time",
        percept="{Name} looks at {pos} boarding pass, which says that the flight leaves from gate {x}",
        belief="the flight to {city} leaves from gate",
        event="Because the incoming plane is late, the airline moves the flight to gate {y}",
        aware="{Name} hears the gate change announced over the speakers.",
        not_aware="{Name} does not hear the gate change announcement.",
        act_aware="^walk to gate {y}",
        act_not_aware="^wait at gate {x}",
        desire_question="Does {Name} want to board the flight to {city}?",
        desire_answer="{Name} wants to board the flight to {city}.",
        variants=(_v(x="twelve", y="thirty"), _v(x="six", y="twenty"), _v(x="nine", y="fourteen")),
        details=(_v(city="Lisbon"), _v(city="Oslo"), _v(city="Montreal"), _v(city="Singapore")),
        random_events=(
            ("A cleaning robot rolls slowly along the terminal floor.", "{Name} notices the cleaning robot.",
             "{Name} does not notice the cleaning robot."),
            ("A family nearby sings happy birthday to a child.", "{Name} hears the family singing.",
             "{Name} does not hear the family singing."),
        ),
    ),
    Scenario(
        key="ferry_bike",
        context="{Name} cycles to the ferry terminal {where} every morning",
        desire="{Name} wants to ride {pos} bike home from the terminal after work",
        percept="{Name} locks {pos} bike to the {rack} and checks that the lock is secure",
        belief="{pos} bike is",
        event="Council workers cut the lock and remove every bike from the {rack} for repainting",
        aware="{Name} reads a notice from the council about the removed bikes.",
        not_aware="{Name} does not read the council's notice about the removed bikes.",
        act_aware="^go to the council depot after work to collect the bike",
        act_not_aware="^walk to the {rack} after work to unlock the bike",
        desire_question="Does {Name} want to ride {pos} bike home?",
        desire_answer="{Name} wants to ride {pos} bike home.",
        variants=(_v(x="at the {rack}", y="at the council depot", rack="blue rack by the ticket office"),
                  _v(x="at the {rack}", y="at the council depot", rack="railings by the pier"),
                  _v(x="at the {rack}", y="at the council depot", rack="covered bike shelter")),
        details=(_v(where="in the harbour town"), _v(where="on the island"), _v(where="across the bay")),
        random_events=(
            ("A ferry horn sounds twice across the water.", "{Name} hears the ferry horn.",
             "{Name} does not hear the ferry horn."),
            ("A kite surfer jumps high over a wave near the pier.", "{Name} sees the kite surfer jumping.",
             "{Name} does not see the kite surfer jumping."),
        ),
    ),
)
"""The scenario templates (at least 24, each with its own setting)."""


# ---------------------------------------------------------------------------------------------
# rendering

_MARKED_VERB = re.compile(r"\^([a-z]+)")
_IRREGULAR = {"have": "has", "go": "goes", "do": "does", "be": "is"}


def _third_person(verb: str) -> str:
    """Present-tense third person singular of a base-form English verb."""
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _conjugate(phrase: str) -> str:
    return _MARKED_VERB.sub(lambda m: _third_person(m.group(1)), phrase)


def _base(phrase: str) -> str:
    return _MARKED_VERB.sub(lambda m: m.group(1), phrase)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _slots(name: str, pronouns: tuple[str, str, str], variant: Mapping[str, str],
           detail: Mapping[str, str]) -> dict[str, str]:
    sub, obj, pos = pronouns
    slots = {"Name": name, "sub": sub, "obj": obj, "pos": pos, "Sub": _cap(sub), "Obj": _cap(obj), "Pos": _cap(pos)}
    # Slot values may themselves use slots (pronouns, or another variant/detail slot): resolve
    # them a few rounds until nothing changes.
    own = {**detail, **variant}
    for _ in range(3):
        resolved = {k: v.format_map({**slots, **own}) for k, v in own.items()}
        if resolved == own:
            break
        own = resolved
    return {**slots, **own}


def _render(sc: Scenario, name: str, pronouns: tuple[str, str, str], variant: Mapping[str, str],
            detail: Mapping[str, str], random_event: tuple[str, str, str]) -> dict[str, str]:
    s = _slots(name, pronouns, variant, detail)

    def f(template: str) -> str:
        return template.format_map(s)

    belief = f(sc.belief)
    x, y = s["x"], s["y"]
    sentences = [
        f(sc.context),
        f(sc.desire),
        f(sc.percept),
        f"{name} believes that {belief} {x}",
        f(sc.event),
    ]
    story = " ".join(_cap(t) + "." for t in sentences)
    act_aware, act_not_aware = f(sc.act_aware), f(sc.act_not_aware)
    desire_a = f(sc.desire_answer)
    desire_n = f(sc.desire_answer_not_aware) if sc.desire_answer_not_aware else desire_a
    rand, rand_aware, rand_not_aware = (f(t) for t in random_event)
    row = {
        "story": story,
        "aware_of_event": f(sc.aware),
        "not_aware_of_event": f(sc.not_aware),
        "action_aware": f"{name} {_conjugate(act_aware)}.",
        "action_not_aware": f"{name} {_conjugate(act_not_aware)}.",
        "belief_question": f"Does {name} believe {belief} {x} or {y}?",
        "desire_question": f(sc.desire_question),
        "action_question": f"What will {name} do?",
        "belief_answer_aware": f"{name} believes that {belief} {y}.",
        "desire_answer_aware": desire_a,
        "action_answer_aware": f"{name} will {_base(act_aware)}.",
        "belief_answer_not_aware": f"{name} believes that {belief} {x}.",
        "desire_answer_not_aware": desire_n,
        "action_answer_not_aware": f"{name} will {_base(act_not_aware)}.",
        "random_event": rand,
        "aware_of_random_event": rand_aware,
        "not_aware_of_random_event": rand_not_aware,
    }
    return row


def _check_row(row: Mapping[str, str], scenario: str) -> None:
    """Raise RuntimeError if a rendered row breaks the BigToM format (a template bug)."""
    bad = [k for k, v in row.items() if any(c in v for c in ";\n\r") or "{" in v or "}" in v or "^" in v]
    if bad:
        raise RuntimeError(f"scenario {scenario!r}: fields {bad} contain forbidden characters")
    problem = _row_problem([row[name] for name in RAW_FIELDS])
    if problem is not None:
        raise RuntimeError(f"scenario {scenario!r} renders a malformed row ({problem}): {row['story']!r}")
    if row["belief_answer_aware"] == row["belief_answer_not_aware"]:
        raise RuntimeError(f"scenario {scenario!r}: aware and not-aware belief answers are identical")


# ---------------------------------------------------------------------------------------------
# public API


def max_stories() -> int:
    """How many distinct stories the templates can give in all."""
    return sum(sc.capacity for sc in SCENARIOS)


def _allocate(n: int, rng: random.Random) -> list[int]:
    """Spread ``n`` stories over the scenarios as evenly as their capacities allow."""
    counts = [0] * len(SCENARIOS)
    order = list(range(len(SCENARIOS)))
    rng.shuffle(order)
    left = n
    while left:
        open_ = [i for i in order if counts[i] < SCENARIOS[i].capacity]
        if not open_:
            raise ValueError(f"cannot place {left} more stories: every scenario is full")
        for i in open_:
            if not left:
                break
            counts[i] += 1
            left -= 1
    return counts


def generate_stories(n: int, seed: int) -> pd.DataFrame:
    """Generate ``n`` distinct BigToM-format stories, deterministically for a given ``seed``.

    Returns a frame with the :data:`tomlab.data.RAW_FIELDS` columns plus ``scenario`` (the template
    key) and ``story_id`` (``0..n-1``).  Stories are spread evenly over the scenarios, and no two
    rows share a story text.  Raises ValueError if ``n`` is negative or larger than
    :func:`max_stories`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    limit = max_stories()
    if n > limit:
        raise ValueError(f"cannot generate {n} distinct stories: the templates give at most {limit}")
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for sc, count in zip(SCENARIOS, _allocate(n, rng)):
        n_var, n_det = len(sc.variants), len(sc.details)
        for index in rng.sample(range(sc.capacity), count):
            name_i, rest = divmod(index, n_var * n_det)
            var_i, det_i = divmod(rest, n_det)
            name, pronouns = NAMES[name_i]
            random_event = sc.random_events[rng.randrange(len(sc.random_events))]
            row = _render(sc, name, pronouns, sc.variants[var_i], sc.details[det_i], random_event)
            _check_row(row, sc.key)
            row["scenario"] = sc.key
            rows.append(row)
    rng.shuffle(rows)
    frame = pd.DataFrame(rows, columns=[*RAW_FIELDS, "scenario"], dtype=object)
    if frame["story"].duplicated().any():
        raise RuntimeError("the templates produced a duplicate story (a template bug)")
    frame["story_id"] = pd.Series(range(len(frame)), dtype="int64")
    return frame


def write_generated(path: str | os.PathLike[str], n: int, seed: int) -> None:
    """Generate ``n`` stories with ``seed`` and write them as a raw BigToM file at ``path``."""
    write_raw(generate_stories(n, seed), path)
