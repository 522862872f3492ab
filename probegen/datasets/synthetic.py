"""The `synthetic` collection: generated true/false statement datasets (docs/design.md §3.4).

Like got_larger_than, these are built entirely in code from small built-in tables, so a
cross-dataset matrix can be computed with no download. Builders never touch the
SourceReader they are given (see GENERATED_IDS). Every dataset is grouped in GoT style:
a group is a statement ("pos") and its negation or mirror-image twin ("neg"), whose labels
are always opposite, and "pos" statements are true in half of the groups.

Splits are 60/20/20 by hash (GOT_SHARES) of the statement's *subject* (the country, the
element, the pair of addends, ...), so the true-claim and false-claim groups about one
subject always land in the same split. Wrong claims are picked by a stable hash, so rows
are identical on every machine.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from typing import TypeVar

import pandas as pd

from probegen.datasets.base import DatasetInfo, Limits, register, stable_unit
from probegen.datasets.got import Statement, assemble, number_words, sentence

T = TypeVar("T")

# (split key, group id, pos text, pos label, neg text); neg label is always `not pos label`.
Item = tuple[str, str, str, bool, str]


def _pick(dataset: str, subject: str, options: Sequence[T]) -> T:
    """A stable pseudo-random choice among `options` for `subject`."""
    return options[int(stable_unit("wrong", dataset, subject) * len(options))]


def _claims(
    dataset: str, facts: list[tuple[str, str]], affirm: Callable[[str, str, bool], str]
) -> list[Item]:
    """Two groups per (subject, value) fact: the true value and a wrong value from another fact.

    `affirm(subject, value, negated)` writes the statement. The wrong value is drawn from
    the other values in the table (never the true one), so it is plausible in form but false;
    this needs each subject to have exactly one true value, which the tables guarantee.
    """
    values = sorted({v for _, v in facts})
    items = []
    for subject, value in facts:
        wrong = _pick(dataset, subject, [v for v in values if v != value])
        for claim in (value, wrong):
            pos = affirm(subject, claim, False)
            items.append(
                (subject, f"{subject}={claim}", pos, claim == value, affirm(subject, claim, True))
            )
    return items


def arithmetic() -> list[Item]:
    """Sums of two numbers 1..25 in words, true sum and a wrong sum off by 1-3; 1250 groups.

    "Twelve plus seven equals nineteen." / "Twelve plus seven does not equal nineteen."
    """
    items = []
    for a in range(1, 26):
        for b in range(1, 26):
            subject = f"{a}+{b}"
            offsets = [d for d in (-3, -2, -1, 1, 2, 3) if a + b + d >= 0]
            wrong = a + b + _pick("synthetic_arithmetic", subject, offsets)
            for c in (a + b, wrong):
                lhs = sentence(f"{number_words(a)} plus {number_words(b)}")
                items.append(
                    (
                        subject,
                        f"{subject}={c}",
                        f"{lhs} equals {number_words(c)}.",
                        c == a + b,
                        f"{lhs} does not equal {number_words(c)}.",
                    )
                )
    return items


def alphabet() -> list[Item]:
    """Order of two distinct letters, "before" vs "after" twin; all 650 ordered pairs.

    "The letter D comes before the letter K in the alphabet." / "... comes after ..."
    """
    letters = string.ascii_uppercase
    return [
        (
            f"{x}{y}",
            f"{x}{y}",
            f"The letter {x} comes before the letter {y} in the alphabet.",
            x < y,
            f"The letter {x} comes after the letter {y} in the alphabet.",
        )
        for x in letters
        for y in letters
        if x != y
    ]


def parity() -> list[Item]:
    """Parity of 1..600 in words, "even" vs "odd" twin; 600 groups.

    "Thirty-seven is an even number." (false) / "Thirty-seven is an odd number." (true)
    """
    return [
        (
            str(n),
            str(n),
            f"{sentence(number_words(n))} is an even number.",
            n % 2 == 0,
            f"{sentence(number_words(n))} is an odd number.",
        )
        for n in range(1, 601)
    ]


# Symbols of elements 1..118 in atomic-number order (IUPAC names: aluminium, caesium, sulfur).
ELEMENTS = """
H hydrogen, He helium, Li lithium, Be beryllium, B boron, C carbon, N nitrogen, O oxygen,
F fluorine, Ne neon, Na sodium, Mg magnesium, Al aluminium, Si silicon, P phosphorus,
S sulfur, Cl chlorine, Ar argon, K potassium, Ca calcium, Sc scandium, Ti titanium,
V vanadium, Cr chromium, Mn manganese, Fe iron, Co cobalt, Ni nickel, Cu copper, Zn zinc,
Ga gallium, Ge germanium, As arsenic, Se selenium, Br bromine, Kr krypton, Rb rubidium,
Sr strontium, Y yttrium, Zr zirconium, Nb niobium, Mo molybdenum, Tc technetium,
Ru ruthenium, Rh rhodium, Pd palladium, Ag silver, Cd cadmium, In indium, Sn tin,
Sb antimony, Te tellurium, I iodine, Xe xenon, Cs caesium, Ba barium, La lanthanum,
Ce cerium, Pr praseodymium, Nd neodymium, Pm promethium, Sm samarium, Eu europium,
Gd gadolinium, Tb terbium, Dy dysprosium, Ho holmium, Er erbium, Tm thulium, Yb ytterbium,
Lu lutetium, Hf hafnium, Ta tantalum, W tungsten, Re rhenium, Os osmium, Ir iridium,
Pt platinum, Au gold, Hg mercury, Tl thallium, Pb lead, Bi bismuth, Po polonium,
At astatine, Rn radon, Fr francium, Ra radium, Ac actinium, Th thorium, Pa protactinium,
U uranium, Np neptunium, Pu plutonium, Am americium, Cm curium, Bk berkelium,
Cf californium, Es einsteinium, Fm fermium, Md mendelevium, No nobelium, Lr lawrencium,
Rf rutherfordium, Db dubnium, Sg seaborgium, Bh bohrium, Hs hassium, Mt meitnerium,
Ds darmstadtium, Rg roentgenium, Cn copernicium, Nh nihonium, Fl flerovium, Mc moscovium,
Lv livermorium, Ts tennessine, Og oganesson
"""


def _table(text: str, entry_sep: str, pair_sep: str) -> list[tuple[str, str]]:
    """Parse "a<pair_sep>b<entry_sep> c<pair_sep>d ..." into (a, b) pairs."""
    entries = [e.strip() for e in text.replace("\n", " ").split(entry_sep) if e.strip()]
    pairs = [tuple(p.strip() for p in e.split(pair_sep, 1)) for e in entries]
    return [(a, b) for a, b in pairs]


def elements() -> list[Item]:
    """Chemical symbols of all 118 elements, true and a wrong symbol; 236 groups.

    "The chemical symbol for gold is Au." / "The chemical symbol for gold is not Au."
    """
    facts = [(name, symbol) for symbol, name in _table(ELEMENTS, ",", " ")]
    return _claims(
        "synthetic_elements",
        facts,
        lambda s, v, neg: f"The chemical symbol for {s} is {'not ' if neg else ''}{v}.",
    )


# Capitals only where they are uncontested and unchanged in recent decades (no Bolivia,
# South Africa, Switzerland, Sri Lanka, Indonesia, Kazakhstan, Tanzania, Israel, ...), and
# no name that is also a US state (Georgia).
CAPITALS = """
France: Paris; Germany: Berlin; Italy: Rome; Spain: Madrid; Portugal: Lisbon;
the United Kingdom: London; Ireland: Dublin; Belgium: Brussels; Austria: Vienna;
Poland: Warsaw; the Czech Republic: Prague; Slovakia: Bratislava; Hungary: Budapest;
Romania: Bucharest; Bulgaria: Sofia; Greece: Athens; Turkey: Ankara; Russia: Moscow;
Ukraine: Kyiv; Belarus: Minsk; Lithuania: Vilnius; Latvia: Riga; Estonia: Tallinn;
Finland: Helsinki; Sweden: Stockholm; Norway: Oslo; Denmark: Copenhagen;
Iceland: Reykjavik; Croatia: Zagreb; Serbia: Belgrade; Slovenia: Ljubljana;
Albania: Tirana; North Macedonia: Skopje; Bosnia and Herzegovina: Sarajevo;
Montenegro: Podgorica; Moldova: Chisinau; Cyprus: Nicosia; Malta: Valletta;
Armenia: Yerevan; Azerbaijan: Baku; China: Beijing; Japan: Tokyo;
South Korea: Seoul; North Korea: Pyongyang; India: New Delhi; Pakistan: Islamabad;
Bangladesh: Dhaka; Nepal: Kathmandu; Bhutan: Thimphu; Afghanistan: Kabul; Iran: Tehran;
Iraq: Baghdad; Syria: Damascus; Jordan: Amman; Lebanon: Beirut; Saudi Arabia: Riyadh;
Oman: Muscat; Qatar: Doha; Kuwait: Kuwait City; the United Arab Emirates: Abu Dhabi;
Thailand: Bangkok; Vietnam: Hanoi; Cambodia: Phnom Penh; Laos: Vientiane;
the Philippines: Manila; Mongolia: Ulaanbaatar; Uzbekistan: Tashkent;
Kyrgyzstan: Bishkek; Tajikistan: Dushanbe; Turkmenistan: Ashgabat; Egypt: Cairo;
Morocco: Rabat; Algeria: Algiers; Tunisia: Tunis; Libya: Tripoli; Sudan: Khartoum;
Ethiopia: Addis Ababa; Kenya: Nairobi; Uganda: Kampala; Rwanda: Kigali; Nigeria: Abuja;
Ghana: Accra; Senegal: Dakar; Mali: Bamako; Niger: Niamey; Chad: N'Djamena;
Zambia: Lusaka; Zimbabwe: Harare; Mozambique: Maputo; Angola: Luanda; Namibia: Windhoek;
Botswana: Gaborone; Madagascar: Antananarivo; Somalia: Mogadishu;
Burkina Faso: Ouagadougou; Guinea: Conakry; Sierra Leone: Freetown; Liberia: Monrovia;
Gabon: Libreville; Malawi: Lilongwe; the Democratic Republic of the Congo: Kinshasa;
Eritrea: Asmara; Mauritania: Nouakchott; Canada: Ottawa; Mexico: Mexico City;
Cuba: Havana; Jamaica: Kingston; Guatemala: Guatemala City; Honduras: Tegucigalpa;
Nicaragua: Managua; Costa Rica: San Jose; Panama: Panama City; El Salvador: San Salvador;
Haiti: Port-au-Prince; the Dominican Republic: Santo Domingo; Colombia: Bogota;
Venezuela: Caracas; Ecuador: Quito; Peru: Lima; Chile: Santiago; Argentina: Buenos Aires;
Uruguay: Montevideo; Paraguay: Asuncion; Brazil: Brasilia; Australia: Canberra;
New Zealand: Wellington; Papua New Guinea: Port Moresby; Fiji: Suva
"""


def capitals() -> list[Item]:
    """Capitals of 128 countries, true and another country's capital; 256 groups.

    "The capital of France is Paris." / "The capital of France is not Paris."
    """
    return _claims(
        "synthetic_capitals",
        _table(CAPITALS, ";", ":"),
        lambda s, v, neg: f"The capital of {s} is {'not ' if neg else ''}{v}.",
    )


# Plural animal names by class. Left out on purpose: spiders/scorpions (arachnids), crabs,
# snails, worms, jellyfish, and names with a common non-animal sense (kiwis, cranes).
ANIMALS = {
    "mammals": """dogs cats horses cows pigs sheep goats lions tigers elephants giraffes
        zebras bears wolves foxes rabbits mice rats squirrels bats whales dolphins kangaroos
        koalas monkeys gorillas chimpanzees camels deer moose hippos rhinos otters beavers
        walruses hedgehogs badgers raccoons leopards cheetahs hamsters porcupines llamas
        donkeys bison moles skunks sloths armadillos lemurs""",
    "birds": """eagles sparrows penguins ostriches owls parrots pigeons crows swans ducks
        geese chickens turkeys flamingos peacocks robins hawks falcons hummingbirds
        woodpeckers pelicans seagulls storks herons vultures emus canaries magpies
        albatrosses toucans finches swallows puffins""",
    "fish": """salmon trout tuna sharks cod goldfish carp catfish eels seahorses herring
        sardines mackerel piranhas halibut swordfish clownfish stingrays pike perch
        anchovies barracudas haddock""",
    "reptiles": """snakes lizards crocodiles alligators turtles tortoises iguanas geckos
        chameleons cobras pythons rattlesnakes anacondas""",
    "amphibians": "frogs toads salamanders newts axolotls",
    "insects": """ants bees wasps butterflies moths beetles flies mosquitoes grasshoppers
        crickets ladybugs dragonflies termites cockroaches fleas hornets fireflies aphids
        cicadas""",
}


def animals() -> list[Item]:
    """Animal classes (mammal, bird, fish, reptile, amphibian, insect), true and a wrong one.

    "Dolphins are mammals." / "Dolphins are not mammals."; 143 animals, 286 groups.
    """
    facts = [(a, cls) for cls, names in ANIMALS.items() for a in names.split()]
    return _claims(
        "synthetic_animals",
        facts,
        lambda s, v, neg: f"{sentence(s)} are {'not ' if neg else ''}{v}.",
    )


def _builder(dataset: str, generate: Callable[[], list[Item]]):
    def build(source: object, limits: Limits) -> pd.DataFrame:
        # `source` is deliberately unused: generated datasets need no files or network.
        units = [
            (
                group,
                key,
                [
                    Statement(f"{dataset}/{group}/pos", pos, label, "pos"),
                    Statement(f"{dataset}/{group}/neg", neg, not label, "neg"),
                ],
            )
            for key, group, pos, label, neg in generate()
        ]
        return assemble(dataset, units, limits)

    build.__doc__ = generate.__doc__
    return build


GENERATORS: dict[str, Callable[[], list[Item]]] = {
    "synthetic_arithmetic": arithmetic,
    "synthetic_alphabet": alphabet,
    "synthetic_parity": parity,
    "synthetic_elements": elements,
    "synthetic_capitals": capitals,
    "synthetic_animals": animals,
}
for _id, _generate in GENERATORS.items():
    register(DatasetInfo(_id, _builder(_id, _generate), "synthetic", grouped=True))

# Datasets built without any source: their builders must never use the SourceReader.
GENERATED_IDS = ("got_larger_than", *GENERATORS)
