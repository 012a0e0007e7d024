"""A synthetic personal corpus with questions and gold answers, for the answer benchmark.

One person's life (Leonor Dias, Lisbon) written across every format flurry reads: Markdown
notes, plain text, mail (.eml and an mbox), a calendar (.ics), contacts (.vcf), WhatsApp and
Telegram exports, PDFs, and pod resources (Turtle, PUT into the node's pod). The details a
person asks for (numbers, dates, times, phone numbers, amounts, names) are drawn from a
seeded RNG, so the corpus is the same for one seed and nothing large is committed; the prose
around them is written by hand, as are the questions (several phrasings, not one template).

Records come with distractors that differ in exactly the detail asked: two plumbers with two
phone numbers, two dentist appointments, a moved appointment (old and new date), several
amounts in one budget note, two cholesterol results. Unanswerable questions ask for things
that are nowhere in the data, some of them about a topic that is present but lacks the
asked detail (the plumber's e-mail, the vet visit's price).

    corpus = build(seed=7)
    corpus.write(folder)              # the files; then node.add(folder)
    corpus.put_pod(node)              # the pod resources
    corpus.questions                  # Question(text, gold, fmt, where, answerable)
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from format_samples import email, make_pdf, mbox  # noqa: E402  (the tests' own writers of each format)

FORMATS = ("markdown", "text", "eml", "mbox", "ics", "vcf", "whatsapp", "telegram", "pdf", "pod")
POD_BASE = "http://127.0.0.1:8765"  # the base IRI the pod resources are parsed under


@dataclass(frozen=True)
class Question:
    text: str
    gold: tuple[
        str, ...
    ]  # any one of these, case/space-normalised, in the answer; () when unanswerable
    fmt: str  # the format of the record that answers it (or of the topic asked about)
    where: tuple[str, str]  # (path suffix, text in the chunk): the record that holds the answer
    answerable: bool = True


@dataclass
class Corpus:
    files: dict[str, bytes] = field(default_factory=dict)  # path under the corpus folder → content
    pod: dict[str, str] = field(default_factory=dict)  # pod path → Turtle
    questions: list[Question] = field(default_factory=list)

    def write(
        self, root: Path, formats: frozenset[str] | None = None, only: tuple[str, ...] = ()
    ) -> Path:
        """The files (of ``formats``, None: all; with ``only``, just those whose path ends so)
        under ``root``; returns ``root``."""
        for rel, content in self.files.items():
            if formats is not None and fmt_of(rel) not in formats:
                continue
            if only and not rel.endswith(only):
                continue
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return root

    def put_pod(self, node) -> None:
        """PUT every pod resource through the node's pod store (which indexes RDF, tagged "pod")."""
        for path, turtle in self.pod.items():
            node.pod.put(path, turtle.encode(), "text/turtle", base=POD_BASE + path)

    def select(
        self, formats: frozenset[str] | None = None, limit: int | None = None
    ) -> list[Question]:
        chosen = [q for q in self.questions if formats is None or q.fmt in formats]
        return chosen if limit is None else spread(chosen, limit)


def spread(questions: list[Question], limit: int) -> list[Question]:
    """``limit`` questions taken round-robin over formats (answerable ones first in each), so a
    short run still covers every format and some unanswerable questions."""
    by_fmt: dict[str, list[Question]] = {}
    for q in questions:
        by_fmt.setdefault(q.fmt, []).append(q)
    # Within each format one unanswerable question every fourth, the first one at a place that
    # shifts from format to format, so that a short run has a few of them, not one per format.
    queues = []
    for shift, qs in enumerate(by_fmt.values()):
        yes, no = [q for q in qs if q.answerable], [q for q in qs if not q.answerable]
        mixed: list[Question] = []
        while yes or no:
            take = 1 + (shift + len(mixed)) % 4 if not mixed else 3
            mixed += yes[:take]
            yes = yes[take:]
            if no:
                mixed.append(no.pop(0))
        queues.append(mixed)
    out: list[Question] = []
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def fmt_of(rel: str) -> str:
    if rel.endswith(".md"):
        return "markdown"
    if rel.endswith(".eml"):
        return "eml"
    if rel.endswith(".mbox"):
        return "mbox"
    if rel.endswith(".ics"):
        return "ics"
    if rel.endswith(".vcf"):
        return "vcf"
    if rel.endswith(".pdf"):
        return "pdf"
    if rel.endswith("result.json"):
        return "telegram"
    if "WhatsApp" in rel:
        return "whatsapp"
    return "text"


# --- how the drawn values are written, and the gold strings that accept them ---------------

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def day_text(d: dt.date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]}"


def day_gold(d: dt.date) -> tuple[str, ...]:
    """ "12 May", "May 12", "12 May"→ "12 may" etc.; the matcher strips ordinals and "of"."""
    full, short = MONTHS[d.month - 1], MONTHS[d.month - 1][:3]
    return (
        f"{d.day} {full}",
        f"{full} {d.day}",
        f"{d.day} {short}",
        f"{short} {d.day}",
        d.isoformat(),
        f"{d.day:02d}/{d.month:02d}",
        f"{d.day}/{d.month}",
    )


def time_gold(hour: int, minute: int) -> tuple[str, ...]:
    h12 = hour % 12 or 12
    ampm = "am" if hour < 12 else "pm"
    return (
        f"{hour:02d}:{minute:02d}",
        f"{hour}:{minute:02d}",
        f"{hour}h{minute:02d}",
        f"{h12}:{minute:02d} {ampm}",
        f"{h12}:{minute:02d}{ampm}",
        f"{h12}.{minute:02d} {ampm}",
    )


def money_gold(n: int | float) -> tuple[str, ...]:
    if isinstance(n, float):
        return (f"{n:.2f}", f"{n:.2f}".replace(".", ","))
    return (f"{n:,}", str(n), f"{n:,}".replace(",", " "), f"{n:,}".replace(",", "."))


class Draw:
    """The seeded values: phone numbers, amounts, days, times, codes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._used: set = set()

    def _unique(self, make):
        while True:
            value = make()
            if value not in self._used:
                self._used.add(value)
                return value

    def phone(self, mobile: bool = True) -> str:
        r = self.rng
        first = r.choice(["91", "93", "96"]) if mobile else "21"
        return self._unique(
            lambda: f"+351 {first}{r.randint(0, 9)} {r.randint(100, 999)} {r.randint(100, 999)}"
        )

    def amount(self, lo: int, hi: int, step: int = 1) -> int:
        return self._unique(lambda: self.rng.randrange(lo, hi, step))

    def cents(self, lo: int, hi: int) -> float:
        return self._unique(lambda: round(self.rng.uniform(lo, hi), 2))

    def day(self, month: int, lo: int = 2, hi: int = 27) -> dt.date:
        return self._unique(lambda: dt.date(2026, month, self.rng.randint(lo, hi)))

    def time(self, lo: int = 8, hi: int = 19) -> tuple[int, int]:
        return self._unique(lambda: (self.rng.randint(lo, hi), self.rng.choice([0, 15, 30, 45])))

    def code(self, letters: int = 3, digits: int = 3) -> str:
        r = self.rng
        abc = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return self._unique(
            lambda: (
                "".join(r.choice(abc) for _ in range(letters))
                + "".join(r.choice("0123456789") for _ in range(digits))
            )
        )

    def number(self, lo: int, hi: int) -> int:
        return self._unique(lambda: self.rng.randint(lo, hi))


def hm(t: tuple[int, int]) -> str:
    return f"{t[0]:02d}:{t[1]:02d}"


def build(seed: int = 7) -> Corpus:
    d = Draw(seed)
    c = Corpus()
    for part in (_markdown, _text, _eml, _mbox, _ics, _vcf, _whatsapp, _telegram, _pdf, _pod):
        part(d, c)
    return c


def _q(c: Corpus, fmt: str, where: tuple[str, str], text: str, *gold) -> None:
    flat: list[str] = []
    for g in gold:
        flat += list(g) if isinstance(g, tuple) else [g]
    c.questions.append(Question(text, tuple(flat), fmt, where))


def _none(c: Corpus, fmt: str, text: str) -> None:
    c.questions.append(Question(text, (), fmt, ("", ""), answerable=False))


# --- Markdown notes -------------------------------------------------------------------------


def _markdown(d: Draw, c: Corpus) -> None:
    f = "markdown"
    start = d.day(3)
    budget, rejected, hood = (
        d.amount(9000, 15000, 50),
        d.amount(15500, 19000, 50),
        d.amount(400, 900, 10),
    )
    c.files["notes/kitchen-renovation.md"] = f"""# Kitchen renovation

## Decisions

We decided to go with oak cabinets and a white quartz countertop for the kitchen renovation.
The old terracotta tiles stay on the floor. Marco Reis's firm does the work, starting on
{day_text(start)}, and the budget is {budget:,} euros including the new extractor hood, which
alone costs {hood} euros. We turned down the quote from Obras Lima ({rejected:,} euros): too
expensive and they could not start before summer.

## Open questions

Whether to move the sink under the window. Ask Marco about the water pipes first.
""".encode()
    k = ("kitchen-renovation.md", "oak")
    _q(c, f, k, "What did I decide about the kitchen renovation?", "oak")
    _q(c, f, k, "Which countertop did we pick for the kitchen?", "quartz")
    _q(c, f, k, "What's the total budget for redoing the kitchen?", money_gold(budget))
    _q(c, f, k, "When does Marco's firm start on the kitchen?", day_gold(start))
    _q(c, f, k, "How much was the Obras Lima quote that we turned down?", money_gold(rejected))
    _q(c, f, k, "What does the new extractor hood cost?", money_gold(hood))
    _none(c, f, "What colour will the kitchen walls be painted?")

    grams = d.number(12, 30)
    c.files["notes/garden.md"] = f"""# Garden

Plant the tomatoes in the second week of May, after the last frost has passed. The beech hedge
along the street needs trimming in October. The rain barrel leaks at the tap, so replace the
rubber seal before the summer storms arrive.

Feed the lemon tree every three weeks with {grams} grams of citrus fertiliser dissolved in a
watering can. The roses by the gate get no fertiliser until March.
""".encode()
    g = ("garden.md", "rain barrel")
    _q(c, f, g, "How should I fix the rain barrel?", "seal")
    _q(c, f, g, "When is the hedge supposed to be trimmed?", "October")
    _q(
        c,
        f,
        ("garden.md", "lemon"),
        "How many grams of fertiliser does the lemon tree get?",
        str(grams),
    )
    _q(c, f, g, "In which month do the tomatoes go in the ground?", "May")
    _none(c, f, "How often should I water the roses?")

    chol_mar, chol_sep, vitd = d.number(170, 199), d.number(205, 240), d.number(18, 45)
    c.files["notes/health/blood-tests.md"] = f"""# Blood tests

## March 2026 (Laboratório Joaquim Chaves)

Total cholesterol {chol_mar} mg/dL, down from the September result. Vitamin D was {vitd} ng/mL,
so Dr. Nunes said to keep taking the supplement through the winter.

## September 2025

Total cholesterol {chol_sep} mg/dL. Advice: less cheese, more walking.
""".encode()
    b = ("blood-tests.md", "cholesterol")
    _q(c, f, b, "What was my cholesterol in the March blood test?", str(chol_mar))
    _q(c, f, b, "Total cholesterol back in September 2025 — what was it?", str(chol_sep))
    _q(c, f, b, "What was my vitamin D level?", str(vitd))
    _q(c, f, b, "Which doctor told me to keep taking the vitamin D supplement?", "Nunes")
    _none(c, f, "What was my blood pressure at the last check-up?")

    c.files["notes/health/allergies.md"] = b"""# Allergies and intolerances

Leonor (me): allergic to penicillin; amoxicillin is therefore out as well. Tell every new doctor.
Ines: allergic to peanuts, carries an adrenaline pen in her school bag.
Tomas: lactose intolerant, no allergies.
"""
    a = ("allergies.md", "penicillin")
    _q(c, f, a, "Which antibiotic am I allergic to?", "penicillin")
    _q(c, f, a, "What is Ines allergic to?", "peanut")
    _q(c, f, a, "Who in the family is lactose intolerant?", "Tomas")
    _none(c, f, "Is the cat allergic to anything?")

    front, rear, chain_km = d.number(55, 70), d.number(71, 85), d.amount(3100, 6900, 100)
    c.files["notes/bike.md"] = f"""# Road bike

Tyre pressure: {front} psi front and {rear} psi rear (I weigh about 62 kg).
The chain was replaced at {chain_km:,} km on the odometer; the shop says check it again after 3,000 km.
Saddle height 71.5 cm from the bottom bracket.
""".encode()
    bk = ("bike.md", "psi")
    _q(c, f, bk, "What pressure goes in the rear tyre of my bike?", str(rear))
    _q(c, f, bk, "front tyre psi?", str(front))
    _q(c, f, bk, "At what odometer reading was the bike chain replaced?", money_gold(chain_km))
    _q(c, f, bk, "How high is my saddle set?", "71.5")

    wifi_pw = f"{d.rng.choice(['laranja', 'sardinha', 'azulejo'])}-{d.number(1000, 9999)}"
    c.files["notes/home/wifi.md"] = f"""# Home network

Main network: DiasCasa-5G (the password is on the sticker under the router).
Guest network: DiasGuest, password {wifi_pw}. The router is a Fritz!Box in the hall cupboard.
""".encode()
    _q(c, f, ("wifi.md", "Guest"), "What's the guest wifi password?", wifi_pw)
    _q(c, f, ("wifi.md", "Guest"), "Where is the router?", "hall cupboard")
    _none(c, f, "What is the internet provider's customer number?")

    hydration, temp, minutes = d.number(68, 78), d.rng.choice([230, 240, 250]), d.number(35, 45)
    c.files["notes/recipes/sourdough.md"] = f"""# Sourdough

500 g flour, {hydration}% hydration, 10 g salt, 100 g starter. Bulk ferment four hours, shape,
overnight in the fridge. Bake at {temp} degrees for {minutes} minutes, lid off for the last ten.
""".encode()
    s = ("sourdough.md", "hydration")
    _q(
        c,
        f,
        s,
        "What hydration do I use for the sourdough?",
        f"{hydration}%",
        f"{hydration} percent",
    )
    _q(c, f, s, "At what temperature is the sourdough baked?", str(temp))
    _q(c, f, s, "How long does the bread bake?", f"{minutes} minutes")

    rent, gym, sitter = d.amount(950, 1400, 5), d.amount(30, 60), d.amount(80, 160, 5)
    c.files["notes/finance/monthly-budget.md"] = f"""# Monthly budget

- Rent: {rent:,} euros
- Gym (Holmes Place, both of us): {gym} euros
- Babysitter, Friday evenings: about {sitter} euros
- Savings transfer on the 2nd of each month: 400 euros to the Banco Atlantico savings account
""".encode()
    m = ("monthly-budget.md", "Rent")
    _q(c, f, m, "How much do we pay in rent each month?", money_gold(rent))
    _q(c, f, m, "How much does the gym cost us per month?", str(gym))
    _q(
        c,
        f,
        m,
        "Which day of the month does the savings transfer go out?",
        "2nd",
        "2 of each",
        "second",
    )
    _none(c, f, "How much do we spend on groceries each month?")

    c.files["notes/work/decisions.md"] = b"""# Team decisions

- 12 January: the weekly team meeting moves from Monday to Thursday at 10:00.
- 3 February: we chose PostgreSQL over MySQL for the billing service, because of the JSON support.
- 9 March: hiring freeze until the end of the second quarter; Rita's contract is extended instead.
"""
    w = ("decisions.md", "PostgreSQL")
    _q(c, f, w, "Which database did we pick for the billing service?", "PostgreSQL", "Postgres")
    _q(c, f, w, "What day is the weekly team meeting now?", "Thursday")
    _q(c, f, w, "Whose contract was extended instead of hiring?", "Rita")
    _none(c, f, "Who is the new head of the billing team?")


# --- plain text -----------------------------------------------------------------------------


def _text(d: Draw, c: Corpus) -> None:
    f = "text"
    plate = f"{d.number(10, 99)}-{d.code(2, 0)}-{d.number(10, 99)}"
    premium, policy, oil_km = (
        d.amount(310, 520),
        f"AZ-{d.number(100000, 999999)}",
        d.amount(85000, 99000, 1000),
    )
    c.files["car.txt"] = f"""Car: grey Renault Clio, plate {plate}.

The insurance is with Allianz, policy {policy}; it renews every January and the yearly premium is
{premium} euros. The next oil change is due at {oil_km:,} kilometres, at the garage on Rua Verde.
Tyres were changed in November (Michelin, all four).
""".encode()
    k = ("car.txt", "Allianz")
    _q(c, f, k, "What's my car's licence plate?", plate)
    _q(c, f, k, "What is the car insurance policy number?", policy)
    _q(c, f, k, "How much is the yearly car insurance premium?", str(premium))
    _q(c, f, k, "At how many kilometres is the next oil change due?", money_gold(oil_km))
    _q(c, f, k, "Which company insures the car?", "Allianz")
    _none(c, f, "How much did the new tyres cost?")

    water, power = d.number(1000, 1999), d.number(20000, 29999)
    old_water = water - d.number(40, 90)
    c.files["home/meter-readings.txt"] = f"""Meter readings

2 January 2026: water {old_water} m3, electricity {power - 900} kWh
1 April 2026: water {water} m3, electricity {power} kWh
""".encode()
    mr = ("meter-readings.txt", "water")
    _q(c, f, mr, "What did the water meter read on 1 April?", str(water))
    _q(c, f, mr, "Electricity meter reading in January?", str(power - 900))
    _none(c, f, "What was the gas meter reading in April?")

    run_min, run_km = d.number(48, 58), d.rng.choice([8, 10, 12])
    c.files[
        "journal/2026-03.txt"
    ] = f"""14 March. Ran {run_km} km along the river in {run_min} minutes, a personal best.
17 March. Lunch with Sofia at Taberna da Rua das Flores; she is moving to Porto in June.
22 March. Ines lost her first molar. The tooth fairy rate is two euros now, apparently.
28 March. Finished reading "Os Maias". Next: "The Name of the Wind", Marta's recommendation.
""".encode()
    j = ("2026-03.txt", "Ran")
    _q(c, f, j, "How long did my personal-best run take?", f"{run_min} minutes")
    _q(c, f, ("2026-03.txt", "Sofia"), "Where is Sofia moving to?", "Porto")
    _q(
        c,
        f,
        ("2026-03.txt", "Sofia"),
        "Where did I have lunch with Sofia?",
        "Taberna da Rua das Flores",
    )
    _q(c, f, ("2026-03.txt", "Maias"), "Which book did I finish at the end of March?", "Os Maias")
    _q(c, f, ("2026-03.txt", "tooth"), "What is the tooth fairy rate now?", "two euros")

    code, host = d.number(1000, 9999), "Ines"
    c.files["travel/lisbon-flat.txt"] = f"""Airbnb in Alfama for the cousins' visit (5 to 9 August)

The host is {host} Carvalho; the key box by the door opens with code {code}.
Check-out is at 11:00. Rubbish goes in the green bins at the corner of Rua dos Remedios.
""".encode()
    t = ("lisbon-flat.txt", "key box")
    _q(c, f, t, "What's the key box code at the Alfama flat?", str(code))
    _q(c, f, t, "What time is check-out at the Airbnb in Alfama?", time_gold(11, 0))
    _q(c, f, t, "Who is the host of the Alfama flat?", "Carvalho")
    _none(c, f, "What is the wifi password at the Alfama flat?")


# --- mail -----------------------------------------------------------------------------------


def _eml(d: Draw, c: Corpus) -> None:
    f = "eml"
    rate = d.rng.choice(["2.9", "3.1", "3.4", "3.6"])
    instalment = d.amount(640, 880)
    c.files["mail/bank-rate.eml"] = email(
        "Banco Atlantico <avisos@bancoatlantico.pt>",
        "Leonor Dias <leonor.dias@example.org>",
        "Tue, 03 Mar 2026 09:12:00 +0000",
        "Your mortgage rate changes in April",
        f"Dear Leonor,\n\nFrom the first of April the interest rate of your mortgage becomes {rate} percent, "
        f"and the monthly instalment rises to {instalment} euros. No action is needed on your side.\n\nBanco Atlantico",
        "rate-2026@bancoatlantico.pt",
    ).encode()
    k = ("bank-rate.eml", "mortgage")
    _q(c, f, k, "What will my mortgage interest rate be from April?", rate, rate.replace(".", ","))
    _q(c, f, k, "How much is the new monthly mortgage instalment?", str(instalment))
    _none(c, f, "How many years are left on the mortgage?")

    rocha_inv, rocha_no = d.cents(90, 260), f"FT 2026/{d.number(100, 999)}"
    c.files["mail/plumber-invoice.eml"] = email(
        "Canalizacoes Rocha <faturas@rocha-canal.example.pt>",
        "leonor.dias@example.org",
        "Mon, 09 Feb 2026 17:40:00 +0000",
        f"Invoice {rocha_no}",
        f"Good afternoon,\n\nPlease find the invoice {rocha_no} for replacing the boiler valve on 6 February: "
        f"{rocha_inv:.2f} euros, VAT included. Payment by bank transfer within 30 days.\n\nJoao Rocha",
        "ft-2026@rocha-canal.example.pt",
    ).encode()
    lopes_quote = d.amount(300, 900, 10)
    c.files["mail/plumber-quote.eml"] = email(
        "Paulo Lopes <paulo@hidrolopes.example.pt>",
        "leonor.dias@example.org",
        "Thu, 12 Feb 2026 08:05:00 +0000",
        "Quote: bathroom pipes",
        f"Dear Mrs Dias,\n\nReplacing the old galvanised pipes in the bathroom would cost {lopes_quote} euros "
        "plus VAT, two days of work. I could start the week after Easter.\n\nBest regards,\nPaulo Lopes, Hidro Lopes",
        "quote-17@hidrolopes.example.pt",
    ).encode()
    _q(
        c,
        f,
        ("plumber-invoice.eml", "boiler valve"),
        "How much did Canalizacoes Rocha charge for the boiler valve?",
        money_gold(rocha_inv),
    )
    _q(
        c,
        f,
        ("plumber-invoice.eml", "boiler valve"),
        "What's the number of the plumber's invoice for the boiler valve?",
        rocha_no,
        rocha_no.split()[-1],
    )
    _q(
        c,
        f,
        ("plumber-quote.eml", "galvanised"),
        "What did Paulo Lopes quote for redoing the bathroom pipes?",
        money_gold(lopes_quote),
    )
    _q(
        c,
        f,
        ("plumber-quote.eml", "galvanised"),
        "When could the second plumber start on the bathroom pipes?",
        "after Easter",
    )
    _none(c, f, "Did I already pay the boiler valve invoice?")

    trip_cost, trip_day = d.amount(8, 25), d.day(5)
    c.files["mail/school-trip.eml"] = email(
        "Escola Basica do Castelo <secretaria@ebcastelo.example.pt>",
        "leonor.dias@example.org",
        "Wed, 15 Apr 2026 16:00:00 +0000",
        "Class 3B trip to the Oceanario",
        f"Dear parents,\n\nClass 3B visits the Oceanario on {day_text(trip_day)}. The trip costs {trip_cost} euros, "
        "to be paid to the class teacher, Professora Graca, by the Friday before. The children should bring a packed lunch.",
        "trip-3b@ebcastelo.example.pt",
    ).encode()
    s = ("school-trip.eml", "Oceanario")
    _q(c, f, s, "When is Ines's class going to the Oceanario?", day_gold(trip_day))
    _q(c, f, s, "How much does the school trip cost?", str(trip_cost))
    _q(c, f, s, "Who do we pay the trip money to?", "Graca")
    _none(c, f, "What time does the school bus leave for the Oceanario?")

    ref, dep = d.code(6, 0), d.time(6, 11)
    fly_day = d.day(7)
    c.files["mail/flight-booking.eml"] = email(
        "TAP Air Portugal <booking@flytap.example.com>",
        "leonor.dias@example.org",
        "Sat, 07 Mar 2026 11:30:00 +0000",
        f"Booking confirmation {ref}",
        f"Thank you for flying with us. Booking reference {ref}.\n\nTP1234 Lisbon (LIS) to Tokyo via Frankfurt, "
        f"departing {day_text(fly_day)} 2026 at {hm(dep)}. 3 passengers: Leonor Dias, Tomas Dias, Ines Dias. "
        "Checked baggage: 1 x 23 kg per passenger.",
        f"{ref.lower()}@flytap.example.com",
    ).encode()
    fl = ("flight-booking.eml", "Booking reference")
    _q(c, f, fl, "What is the booking reference for the Tokyo flight?", ref)
    _q(c, f, fl, "What time does our flight to Tokyo leave?", time_gold(*dep))
    _q(c, f, fl, "On which day do we fly to Tokyo?", day_gold(fly_day))
    _q(c, f, fl, "How much checked baggage do we get per person?", "23 kg", "23kg")
    _q(c, f, fl, "Which city do we change planes in on the way to Tokyo?", "Frankfurt")


def _mbox(d: Draw, c: Corpus) -> None:
    f = "mbox"
    meet = d.time(7, 9)
    fee = d.amount(40, 90, 5)
    old_day, new_day = d.day(4), d.day(4)
    owe = d.amount(45, 180, 5)
    messages = [
        email(
            "Ana Silva <ana.silva@example.org>",
            "leonor.dias@example.org",
            "Mon, 02 Feb 2026 18:00:00 +0000",
            "Saturday hike",
            f"Shall we hike the Sintra trail on Saturday? Meet at Rossio station at {hm(meet)}, "
            "the train leaves ten minutes later. Bring water, it is a long climb to the Pena palace.",
            "hike@example.org",
        ),
        email(
            "Clube de Xadrez <clube@example.org>",
            "leonor.dias@example.org",
            "Wed, 04 Feb 2026 10:00:00 +0000",
            "Chess club membership fee",
            f"The yearly chess club membership fee is {fee} euros, due by the end of "
            "February. Tournaments are on the first Sunday of each month.",
            "chess@example.org",
        ),
        email(
            "Marta Pinto <marta.pinto@example.org>",
            "leonor.dias@example.org",
            "Fri, 06 Feb 2026 21:30:00 +0000",
            "Book recommendation",
            "You should read The Name of the Wind, it is the fantasy novel I mentioned "
            "at dinner. I can lend you my copy.",
            "book@example.org",
        ),
        email(
            "Clinica Dentaria Almeida <marcacoes@clinica-almeida.example.pt>",
            "leonor.dias@example.org",
            "Tue, 10 Mar 2026 12:00:00 +0000",
            "Appointment moved",
            f"Dear Leonor Dias, your check-up with Dr. Helena Almeida on {day_text(old_day)} has been moved to "
            f"{day_text(new_day)}, same time. Please reply if the new date does not suit you.",
            "move@clinica-almeida.example.pt",
        ),
        email(
            "Carlos Mendes <carlos.m@example.org>",
            "leonor.dias@example.org",
            "Sun, 15 Mar 2026 20:10:00 +0000",
            "Concert tickets",
            f"Thanks for getting the tickets! I owe you {owe} euros, I'll transfer it on Friday. "
            "The concert is at Coliseu, doors open at 20:00.",
            "tickets@example.org",
        ),
        email(
            "Sr. Almeida (3rd floor) <jalmeida@example.org>",
            "leonor.dias@example.org",
            "Thu, 19 Mar 2026 07:45:00 +0000",
            "Water on my ceiling",
            "Good morning, there is a damp patch on my bathroom ceiling under yours again. "
            "Could your plumber Joao come and look at it this week?",
            "leak@example.org",
        ),
    ]
    c.files["mail/archive.mbox"] = mbox(messages).encode()
    w = "archive.mbox"
    _q(c, f, (w, "Sintra"), "Where are we meeting Ana for the Sintra hike?", "Rossio")
    _q(c, f, (w, "Sintra"), "What time do we meet for the hike?", time_gold(*meet))
    _q(c, f, (w, "chess"), "How much is the yearly chess club fee?", str(fee))
    _q(c, f, (w, "chess"), "When are the chess tournaments?", "first Sunday")
    _q(c, f, (w, "Name of the Wind"), "Which book did Marta recommend?", "The Name of the Wind")
    _q(
        c,
        f,
        (w, "moved"),
        "My dentist check-up was moved: what is the new date?",
        day_gold(new_day),
    )
    _q(
        c,
        f,
        (w, "moved"),
        "What was the original date of the dental check-up before it moved?",
        day_gold(old_day),
    )
    _q(c, f, (w, "tickets"), "How much does Carlos owe me for the concert tickets?", str(owe))
    _q(c, f, (w, "tickets"), "Where is the concert Carlos and I are going to?", "Coliseu")
    _q(c, f, (w, "ceiling"), "Which neighbour complained about water on the ceiling?", "Almeida")
    _q(c, f, (w, "tickets"), "When do the doors open for the Coliseu concert?", time_gold(20, 0))
    _q(
        c,
        f,
        (w, "Name of the Wind"),
        "Who offered to lend me her copy of a fantasy novel?",
        "Marta",
    )
    _none(c, f, "Which band is playing at the Coliseu concert?")
    _none(c, f, "How long is the Sintra hike?")
    _none(c, f, "What time is the chess tournament?")


# --- calendar -------------------------------------------------------------------------------


def _ics(d: Draw, c: Corpus) -> None:
    f = "ics"
    events = []

    def event(
        uid: str,
        start: str,
        summary: str,
        location: str = "",
        description: str = "",
        end: str = "",
        rrule: str = "",
    ) -> None:
        lines = ["BEGIN:VEVENT", f"UID:{uid}@dias.example.org", "DTSTAMP:20260101T000000Z", start]
        lines += [end] if end else []
        lines += [f"RRULE:{rrule}"] if rrule else []
        lines += [f"SUMMARY:{summary}"]
        lines += [f"LOCATION:{location.replace(',', chr(92) + ',')}"] if location else []
        lines += [f"DESCRIPTION:{description.replace(',', chr(92) + ',')}"] if description else []
        events.append("\r\n".join(lines + ["END:VEVENT"]))

    def at(day: dt.date, t: tuple[int, int]) -> str:
        return f"DTSTART;TZID=Europe/Lisbon:{day.strftime('%Y%m%d')}T{t[0]:02d}{t[1]:02d}00"

    den_me, den_ines = d.day(6), d.day(6)
    t_me, t_ines = d.time(9, 12), d.time(14, 17)
    event(
        "dent-1",
        at(den_me, t_me),
        "Dentist (Leonor)",
        "Clinica Dentaria Almeida, Avenida de Roma 31",
        "Six-month check-up with Dr. Helena Almeida.",
    )
    event(
        "dent-2",
        at(den_ines, t_ines),
        "Dentist (Ines)",
        "Clinica Dentaria Almeida, Avenida de Roma 31",
        "Ines: sealant on the new molars.",
    )
    _q(
        c,
        f,
        ("family.ics", "Dentist (Leonor)"),
        "When is my own dentist appointment?",
        day_gold(den_me),
    )
    _q(
        c,
        f,
        ("family.ics", "Dentist (Ines)"),
        "What time is Ines's dentist appointment?",
        time_gold(*t_ines),
    )
    _q(
        c,
        f,
        ("family.ics", "Dentist (Leonor)"),
        "What address is the dentist at?",
        "Avenida de Roma 31",
    )
    _q(
        c,
        f,
        ("family.ics", "Dentist (Ines)"),
        "What is being done at Ines's dentist visit?",
        "sealant",
    )

    vet, vt = d.day(4), d.time(15, 18)
    event(
        "vet-1",
        at(vet, vt),
        "Vet: Pimenta's vaccination",
        "Clinica Veterinaria do Bairro, Rua das Flores 12",
        "Annual vaccination for Pimenta the cat. Bring her vaccination booklet.",
    )
    _q(c, f, ("family.ics", "Pimenta"), "When is the cat's vaccination appointment?", day_gold(vet))
    _q(
        c,
        f,
        ("family.ics", "Pimenta"),
        "What do I need to bring to the vet?",
        "vaccination booklet",
    )
    _none(c, f, "How much will Pimenta's vaccination cost?")

    ptm, pt = d.day(5), d.time(17, 19)
    event(
        "school-1",
        at(ptm, pt),
        "Parent-teacher meeting, class 3B",
        "Escola Basica do Castelo, room 12",
    )
    _q(
        c,
        f,
        ("family.ics", "Parent-teacher"),
        "Which room is the parent-teacher meeting in?",
        "room 12",
    )
    _q(c, f, ("family.ics", "Parent-teacher"), "When's the parent-teacher meeting?", day_gold(ptm))

    insp = d.day(9)
    event(
        "car-1",
        at(insp, (8, 30)),
        "Car inspection (IPO)",
        "Centro de Inspecoes de Benfica",
        "Bring the registration document and the insurance certificate.",
    )
    _q(c, f, ("family.ics", "inspection"), "Where is the car inspection?", "Benfica")
    _q(
        c,
        f,
        ("family.ics", "inspection"),
        "What day is the car booked in for its IPO inspection?",
        day_gold(insp),
    )

    event(
        "choir-1",
        "DTSTART;TZID=Europe/Lisbon:20260105T193000",
        "Choir rehearsal",
        "Igreja de Sao Roque",
        end="DTEND;TZID=Europe/Lisbon:20260105T213000",
        rrule="FREQ=WEEKLY;BYDAY=MO",
    )
    _q(c, f, ("family.ics", "Choir"), "Where does the choir rehearse?", "Sao Roque")
    _q(c, f, ("family.ics", "Choir"), "What time does choir rehearsal start?", time_gold(19, 30))
    _q(c, f, ("family.ics", "Choir"), "Which weekday is choir practice on?", "Monday", "MO")

    yoga_t = d.time(7, 8)
    event(
        "yoga-1",
        f"DTSTART;TZID=Europe/Lisbon:20260107T{yoga_t[0]:02d}{yoga_t[1]:02d}00",
        "Yoga with Teresa",
        "Estudio Prana, Rua de Sao Bento 88",
        rrule="FREQ=WEEKLY;BYDAY=WE",
    )
    _q(c, f, ("family.ics", "Yoga"), "Who teaches my yoga class?", "Teresa")
    _q(c, f, ("family.ics", "Yoga"), "What time is yoga?", time_gold(*yoga_t))

    party = d.day(6)
    event(
        "party-1",
        at(party, (16, 0)),
        "Ines's 9th birthday party",
        "Parque dos Poetas, Oeiras",
        "Bouncy castle booked with Festas Alegria. 14 children confirmed.",
    )
    _q(
        c,
        f,
        ("family.ics", "birthday party"),
        "How many children are coming to Ines's party?",
        "14",
    )
    _q(
        c,
        f,
        ("family.ics", "birthday party"),
        "Where is Ines's birthday party?",
        "Parque dos Poetas",
    )
    _q(
        c,
        f,
        ("family.ics", "birthday party"),
        "Who did we book the bouncy castle with?",
        "Festas Alegria",
    )
    _none(c, f, "What kind of cake did we order for the party?")

    event("tax-1", "DTSTART;VALUE=DATE:20260630", "Income tax return deadline")
    _q(
        c,
        f,
        ("family.ics", "tax return"),
        "What's the deadline for the income tax return?",
        day_gold(dt.date(2026, 6, 30)),
    )
    _none(c, f, "Who is our accountant for the tax return?")
    _none(c, f, "When is Tomas's next physiotherapy session?")

    c.files["calendar/family.ics"] = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//flurry answer bench//EN\r\nX-WR-CALNAME:Family\r\n"
        + "\r\n".join(events)
        + "\r\nEND:VCALENDAR\r\n"
    ).encode()


# --- contacts -------------------------------------------------------------------------------


def _vcf(d: Draw, c: Corpus) -> None:
    f = "vcf"
    rocha, lopes, dentist, sitter, elec, mech = (
        d.phone(),
        d.phone(),
        d.phone(False),
        d.phone(),
        d.phone(),
        d.phone(False),
    )
    ana_bday = d.day(d.rng.randint(1, 12), 1, 28)
    cards = [
        (
            "Joao Rocha",
            [
                f"TEL;TYPE=CELL:{rocha}",
                "ORG:Canalizacoes Rocha",
                "NOTE:Plumber who replaced the boiler valve. Good, a bit slow.",
            ],
        ),
        (
            "Paulo Lopes",
            [
                f"TEL;TYPE=CELL:{lopes}",
                "EMAIL:paulo@hidrolopes.example.pt",
                "ORG:Hidro Lopes",
                "NOTE:Plumber, quoted for the bathroom pipes.",
            ],
        ),
        (
            "Dr. Helena Almeida",
            [
                f"TEL;TYPE=WORK:{dentist}",
                "ORG:Clinica Dentaria Almeida",
                "ADR;TYPE=WORK:;;Avenida de Roma 31;Lisboa;;1000-265;Portugal",
            ],
        ),
        (
            "Carla Matos",
            [
                f"TEL;TYPE=CELL:{sitter}",
                "EMAIL:carla.matos@example.org",
                "NOTE:Babysitter. Friday evenings; knows about Ines's peanut allergy.",
            ],
        ),
        (
            "Rui Fernandes",
            [f"TEL;TYPE=CELL:{elec}", "NOTE:Electrician, fixed the kitchen sockets."],
        ),
        (
            "Oficina Rua Verde",
            [f"TEL;TYPE=WORK:{mech}", "NOTE:Garage for the Clio. Ask for Sr. Jorge."],
        ),
        (
            "Ana Silva",
            [
                "EMAIL;TYPE=HOME:ana.silva@example.org",
                f"BDAY:{ana_bday.isoformat()}",
                "NOTE:Hiking friend from the Sintra group.",
            ],
        ),
        (
            "Pedro Santos",
            [
                "ADR;TYPE=HOME:;;Rua Augusta 40;Lisboa;;1100-053;Portugal",
                "EMAIL:pedro.santos@example.org",
            ],
        ),
    ]
    text = "".join(
        "BEGIN:VCARD\r\nVERSION:3.0\r\n"
        f"FN:{name}\r\nN:{name.split()[-1]};{name.split()[0]};;;\r\n"
        + "".join(line + "\r\n" for line in lines)
        + "END:VCARD\r\n"
        for name, lines in cards
    )
    c.files["contacts.vcf"] = text.encode()
    v = "contacts.vcf"
    _q(c, f, (v, "Joao Rocha"), "What's Joao Rocha's phone number?", rocha)
    _q(c, f, (v, "Joao Rocha"), "Phone number of the plumber who replaced the boiler valve?", rocha)
    _q(c, f, (v, "Paulo Lopes"), "How do I call Paulo Lopes?", lopes)
    _q(
        c,
        f,
        (v, "Paulo Lopes"),
        "What is the e-mail address of the plumber who quoted for the bathroom pipes?",
        "paulo@hidrolopes.example.pt",
    )
    _q(c, f, (v, "Helena Almeida"), "What number do I ring to reach the dental clinic?", dentist)
    _q(c, f, (v, "Carla Matos"), "What is the babysitter's phone number?", sitter)
    _q(c, f, (v, "Carla Matos"), "Carla's email?", "carla.matos@example.org")
    _q(c, f, (v, "Rui Fernandes"), "Who is our electrician?", "Rui Fernandes")
    _q(c, f, (v, "Rui Fernandes"), "Give me the electrician's number.", elec)
    _q(c, f, (v, "Oficina Rua Verde"), "Who should I ask for at the garage on Rua Verde?", "Jorge")
    _q(c, f, (v, "Oficina Rua Verde"), "What is the phone number of the garage?", mech)
    _q(c, f, (v, "Ana Silva"), "When is Ana Silva's birthday?", day_gold(ana_bday))
    _q(c, f, (v, "Ana Silva"), "What's Ana's email address?", "ana.silva@example.org")
    _q(c, f, (v, "Pedro Santos"), "Where does Pedro Santos live?", "Rua Augusta 40")
    _q(c, f, (v, "Pedro Santos"), "Pedro's postcode?", "1100-053")
    _none(c, f, "What is Joao Rocha's home address?")
    _none(c, f, "What is Pedro Santos's phone number?")
    _none(c, f, "When is Carla Matos's birthday?")
    _none(c, f, "What is Marco Reis's mobile number?")


# --- chat exports ---------------------------------------------------------------------------


def _whatsapp(d: Draw, c: Corpus) -> None:
    f = "whatsapp"
    dinner, door = d.time(19, 21), d.number(1000, 9999)
    dish = d.rng.choice(["bacalhau com natas", "arroz de pato", "caldeirada"])
    c.files[
        "chats/WhatsApp Chat with Tomas.txt"
    ] = f"""12/03/2026, 09:15 - Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
12/03/2026, 09:15 - Tomas: Morning! Did you book the restaurant for Saturday?
12/03/2026, 09:17 - Leonor: Yes, Cantinho do Avillez, table for four at {hm(dinner)}
12/03/2026, 09:18 - Tomas: Perfect. My parents are coming too
14/03/2026, 16:40 - Tomas: Who picks Ines up from swimming today?
14/03/2026, 16:42 - Leonor: You do, I have the choir. Swimming ends at 18:15
20/03/2026, 11:03 - Tomas: The new garage door code is {door}
20/03/2026, 11:04 - Leonor: Got it, I'll tell Carla
22/03/2026, 19:30 - Tomas: For Sunday lunch I'm making {dish}, can you buy cream on the way home?
""".encode()
    w = "WhatsApp Chat with Tomas.txt"
    _q(c, f, (w, "Cantinho"), "Which restaurant did I book for Saturday?", "Cantinho do Avillez")
    _q(c, f, (w, "Cantinho"), "What time is the restaurant table on Saturday?", time_gold(*dinner))
    _q(c, f, (w, "Cantinho"), "How many people is the restaurant booking for?", "four", "4")
    _q(c, f, (w, "swimming"), "Who picks Ines up from swimming?", "Tomas", "You do")
    _q(c, f, (w, "swimming"), "What time does swimming end?", time_gold(18, 15))
    _q(c, f, (w, "garage door"), "What is the new garage door code?", str(door))
    _q(c, f, (w, "Cantinho"), "Who else is coming to the Saturday dinner?", "parents")
    _q(c, f, (w, "Sunday lunch"), "What is Tomas cooking for Sunday lunch?", dish)
    _none(c, f, "What is the name of Ines's swimming coach?")

    rate = d.amount(8, 14)
    c.files[
        "chats/WhatsApp Chat with Carla Matos.txt"
    ] = f"""02/02/2026, 20:01 - Carla Matos: Hi Leonor, yes I can do Fridays from 19:00
02/02/2026, 20:03 - Leonor: Great! What is your rate?
02/02/2026, 20:05 - Carla Matos: {rate} euros an hour, and after midnight I'd need a taxi home
02/02/2026, 20:06 - Leonor: That's fine, we'll pay the taxi
""".encode()
    w2 = "WhatsApp Chat with Carla Matos.txt"
    _q(c, f, (w2, "an hour"), "What does the babysitter charge per hour?", str(rate))
    _q(c, f, (w2, "Fridays"), "From what time can Carla babysit on Fridays?", time_gold(19, 0))
    _q(c, f, (w2, "taxi"), "What does Carla need after midnight?", "taxi")
    _none(c, f, "Which taxi company does Carla use?")


def _telegram(d: Draw, c: Corpus) -> None:
    f = "telegram"
    race, start = d.day(10, 4, 26), d.time(8, 9)
    bib_end = d.time(18, 20)
    pace = f"5:{d.number(10, 40)}"
    doc = {
        "name": "Corredores de Alvalade",
        "type": "private_group",
        "id": 4242,
        "messages": [
            {
                "id": 1,
                "type": "message",
                "date": "2026-03-20T19:00:00",
                "from": "Tiago",
                "text": f"Lisbon half marathon is on {day_text(race)}, start at {hm(start)} on the 25 de Abril bridge.",
            },
            {
                "id": 2,
                "type": "message",
                "date": "2026-03-20T19:04:00",
                "from": "Leonor",
                "text": ["I'm in! Aiming for ", {"type": "bold", "text": pace}, " per km"],
            },
            {
                "id": 3,
                "type": "message",
                "date": "2026-03-20T19:06:00",
                "from": "Tiago",
                "text": f"Bib pickup at the FIL expo centre, open until {hm(bib_end)} the day before.",
            },
            {
                "id": 4,
                "type": "service",
                "date": "2026-03-21T08:00:00",
                "actor": "Tiago",
                "action": "pin_message",
            },
            {
                "id": 5,
                "type": "message",
                "date": "2026-03-25T12:00:00",
                "from": "Beatriz",
                "text": "Sunday long run moves to Monsanto, meet at the Alto da Serafina car park.",
            },
            {
                "id": 6,
                "type": "message",
                "date": "2026-03-25T12:02:00",
                "from": "Tiago",
                "text": "Club t-shirts are 18 euros, pay Beatriz by MB Way.",
            },
        ],
    }
    c.files["telegram/result.json"] = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    w = "result.json"
    _q(c, f, (w, "half marathon"), "When is the Lisbon half marathon?", day_gold(race))
    _q(c, f, (w, "half marathon"), "What time does the half marathon start?", time_gold(*start))
    _q(c, f, (w, "half marathon"), "Where does the half marathon start?", "25 de Abril bridge")
    _q(c, f, (w, "Aiming"), "What pace am I aiming for in the half marathon?", pace)
    _q(c, f, (w, "Bib pickup"), "Where do we pick up the race bibs?", "FIL")
    _q(c, f, (w, "Bib pickup"), "Until what time is bib pickup open?", time_gold(*bib_end))
    _q(c, f, (w, "Monsanto"), "Where is the Sunday long run now?", "Monsanto")
    _q(c, f, (w, "Monsanto"), "Which car park do we meet at for the long run?", "Alto da Serafina")
    _q(c, f, (w, "t-shirts"), "How much are the running club t-shirts?", "18")
    _q(c, f, (w, "t-shirts"), "Who do I pay for the club t-shirt?", "Beatriz")
    _none(c, f, "What was my finishing time in last year's half marathon?")
    _none(c, f, "What size club t-shirt did I order?")


# --- PDF ------------------------------------------------------------------------------------


def _pdf(d: Draw, c: Corpus) -> None:
    f = "pdf"
    contract_no = f"{d.number(10, 99)}-{d.number(1000, 9999)}-{d.number(1000, 9999)}"
    power = d.rng.choice(["3.45", "4.6", "5.75", "6.9"])
    c.files["papers/electricity-contract.pdf"] = make_pdf(
        [
            [
                "Electricity contract - EDP Comercial",
                "Customer: Leonor Dias",
                f"Contract number {contract_no}",
                "Supply address: Rua Almirante Reis 112, 3 Esq, Lisboa",
            ],
            [
                "Tariff details",
                f"The contracted power is {power} kVA on the bi-hourly tariff.",
                "Off-peak hours run from 22:00 to 08:00.",
                "The contract renews automatically every 12 months.",
            ],
        ],
        title="EDP contract",
    )
    e = ("electricity-contract.pdf", "")
    _q(c, f, (e[0], "Contract number"), "What is my electricity contract number?", contract_no)
    _q(
        c,
        f,
        (e[0], "kVA"),
        "What contracted power do we have with EDP?",
        power,
        power.replace(".", ","),
    )
    _q(c, f, (e[0], "Off-peak"), "When do the off-peak electricity hours start?", time_gold(22, 0))
    _none(c, f, "How much is the monthly standing charge on the electricity contract?")

    policy, cover, deductible = (
        f"MR-{d.number(100000, 999999)}",
        d.amount(150000, 300000, 5000),
        d.amount(150, 500, 50),
    )
    assist = d.phone(False)
    c.files["papers/home-insurance.pdf"] = make_pdf(
        [
            [
                "Fidelidade - Home insurance policy",
                f"Policy number: {policy}",
                "Policyholder: Leonor Dias",
                f"Building cover: {cover:,} euros",
                f"Deductible per claim: {deductible} euros",
            ],
            [
                "Water damage is covered, including leaks from a neighbour's flat.",
                f"24-hour home assistance line: {assist}",
                "Claims must be reported within 8 days.",
            ],
        ],
        title="Home insurance",
    )
    h = "home-insurance.pdf"
    _q(c, f, (h, "Policy number"), "What is the home insurance policy number?", policy)
    _q(c, f, (h, "Building cover"), "How much is the building covered for?", money_gold(cover))
    _q(c, f, (h, "Deductible"), "What's the deductible on the home insurance?", str(deductible))
    _q(c, f, (h, "assistance line"), "What number do I call for home assistance?", assist)
    _q(
        c,
        f,
        (h, "Claims"),
        "Within how many days must a home insurance claim be reported?",
        "8 days",
    )
    _none(c, f, "Does the home insurance cover earthquakes?")

    deposit_m, lease_start = d.number(2, 3), d.day(9)
    c.files["papers/lease.pdf"] = make_pdf(
        [
            [
                "Residential lease agreement",
                "Landlord: Manuel Figueiredo",
                "Tenant: Leonor Dias and Tomas Dias",
                "Property: Rua Almirante Reis 112, 3 Esq, Lisboa",
                f"Start date: {day_text(lease_start)} 2024",
            ],
            [
                "Rent is due on the 8th day of each month by bank transfer.",
                f"Deposit: {deposit_m} months of rent, returned at the end of the lease.",
                "Pets are allowed with the landlord's written consent.",
            ],
        ],
        title="Lease",
    )
    le = "lease.pdf"
    _q(c, f, (le, "Landlord"), "What's the landlord's name?", "Manuel Figueiredo")
    _q(
        c,
        f,
        (le, "Rent is due"),
        "On which day of the month is the rent due?",
        "8th",
        "8 of each",
        "eighth",
    )
    _q(
        c,
        f,
        (le, "Deposit"),
        "How many months of rent was the deposit?",
        str(deposit_m),
        ["two", "three"][deposit_m - 2],
    )
    _q(c, f, (le, "Start date"), "When did our lease start?", day_gold(lease_start))
    _none(c, f, "When does the lease end?")


# --- pod resources (Turtle) ------------------------------------------------------------------


def _pod(d: Draw, c: Corpus) -> None:
    f = "pod"
    sofia, sofia_price = d.phone(), d.amount(20, 40)
    c.pod["/pod/contacts/sofia"] = f"""@prefix vcard: <http://www.w3.org/2006/vcard/ns#> .
<#this> a vcard:Individual ;
    vcard:fn "Sofia Martins" ;
    vcard:hasTelephone [ a vcard:Cell ; vcard:value <tel:{sofia.replace(" ", "-")}> ] ;
    vcard:hasEmail <mailto:sofia.martins@example.org> ;
    vcard:note "Ines's piano teacher; lessons on Tuesdays, {sofia_price} euros an hour." .
"""
    _q(c, f, ("/pod/contacts/sofia", "Sofia"), "What is the piano teacher's phone number?", sofia)
    _q(
        c,
        f,
        ("/pod/contacts/sofia", "Sofia"),
        "How much does Sofia charge for a piano lesson?",
        str(sofia_price),
    )
    _q(c, f, ("/pod/contacts/sofia", "Sofia"), "On which day are the piano lessons?", "Tuesday")
    _q(
        c,
        f,
        ("/pod/contacts/sofia", "Sofia"),
        "What's Sofia Martins's e-mail?",
        "sofia.martins@example.org",
    )

    ricardo = d.phone()
    c.pod["/pod/contacts/ricardo"] = f"""@prefix vcard: <http://www.w3.org/2006/vcard/ns#> .
<#this> a vcard:Individual ;
    vcard:fn "Ricardo Nogueira" ;
    vcard:hasTelephone [ a vcard:Cell ; vcard:value <tel:{ricardo.replace(" ", "-")}> ] ;
    vcard:organization-name "Nogueira Arquitectos" ;
    vcard:note "Architect for the balcony enclosure; prefers calls after 14:00." .
"""
    _q(
        c,
        f,
        ("/pod/contacts/ricardo", "Ricardo"),
        "Who is the architect for the balcony?",
        "Ricardo Nogueira",
    )
    _q(
        c,
        f,
        ("/pod/contacts/ricardo", "Ricardo"),
        "What's the balcony architect's number?",
        ricardo,
    )
    _q(
        c,
        f,
        ("/pod/contacts/ricardo", "Ricardo"),
        "When does the architect prefer to be called?",
        time_gold(14, 0),
    )
    _none(c, f, "What is Ricardo Nogueira's e-mail address?")

    book_day = d.day(5)
    c.pod["/pod/events/book-club"] = f"""@prefix schema: <https://schema.org/> .
<#this> a schema:Event ;
    schema:name "Book club: Os Maias" ;
    schema:startDate "{book_day.isoformat()}T19:30:00" ;
    schema:location "Livraria Ler Devagar, LX Factory" ;
    schema:description "Bring a dish to share. Filipa hosts this month." .
"""
    _q(
        c,
        f,
        ("/pod/events/book-club", "Book club"),
        "Where does the book club meet?",
        "Ler Devagar",
    )
    _q(
        c,
        f,
        ("/pod/events/book-club", "Book club"),
        "Who hosts the book club this month?",
        "Filipa",
    )
    _q(
        c,
        f,
        ("/pod/events/book-club", "Book club"),
        "What date is the next book club?",
        day_gold(book_day),
    )
    _none(c, f, "Which book will the book club read after Os Maias?")

    c.pod["/pod/bookmarks/ceramics"] = """@prefix schema: <https://schema.org/> .
<#this> a schema:WebPage ;
    schema:name "Ceramics course at Oficina do Barro" ;
    schema:url <https://oficinadobarro.example.pt/cursos> ;
    schema:description "Eight Saturday mornings, wheel throwing for beginners; enrolment closes in September." .
"""
    _q(
        c,
        f,
        ("/pod/bookmarks/ceramics", "Ceramics"),
        "Where is the ceramics course I bookmarked?",
        "Oficina do Barro",
    )
    _q(
        c,
        f,
        ("/pod/bookmarks/ceramics", "Ceramics"),
        "How many sessions is the ceramics course?",
        "Eight",
        "8",
    )
    _none(c, f, "How much does the ceramics course cost?")


def check(corpus: Corpus) -> list[str]:
    """What is wrong with the corpus itself: an answerable question whose gold string is not in
    any chunk of its record as the indexer cuts it (the pod's RDF rendered as the pod store does)."""
    from answer_checks import is_right

    from store.ingest import parse
    from store.parse_process import chunks_of
    from store.parsers import Skip
    from store.parsers.registry import MBOX, parser_for_name
    from store.rdf import TURTLE, graph_text
    from store.rdf import parse as parse_rdf

    problems: list[str] = []
    chunks: dict[str, list[str]] = {}
    for rel, content in corpus.files.items():
        parser = MBOX if rel.endswith(".mbox") else parser_for_name(rel)
        assert parser is not None, (
            f"flurry reads no {rel}: the corpus must hold only formats it reads"
        )
        records = parse(parser, content, Path(rel).name)
        if isinstance(records, Skip):
            problems.append(f"{rel}: the parser skipped it ({records.reason})")
            continue
        chunks[rel] = [text for record in records for text, _ in chunks_of(record)]
    for path, turtle in corpus.pod.items():
        chunks[path] = [
            f"{path}\n{graph_text(parse_rdf(turtle.encode(), TURTLE, POD_BASE + path))}"
        ]
    for q in corpus.questions:
        if not q.answerable:
            continue
        suffix, marker = q.where
        texts = [t for rel, ts in chunks.items() if rel.endswith(suffix) for t in ts if marker in t]
        if not texts:
            problems.append(f"{q.text!r}: no chunk of {suffix} holds {marker!r}")
        elif not any(is_right(t, q.gold) for t in texts):
            problems.append(f"{q.text!r}: no gold {q.gold[:2]} in {texts[0][:200]!r}")
    return problems


if __name__ == "__main__":
    corpus = build()
    for problem in check(corpus):
        print("PROBLEM", problem)
    answerable = [q for q in corpus.questions if q.answerable]
    print(
        f"{len(corpus.files)} files, {len(corpus.pod)} pod resources, {len(answerable)} answerable questions, "
        f"{len(corpus.questions) - len(answerable)} unanswerable"
    )
    for fmt in FORMATS:
        qs = [q for q in corpus.questions if q.fmt == fmt]
        print(
            f"  {fmt:9} {sum(q.answerable for q in qs):3} + {sum(not q.answerable for q in qs)} unanswerable"
        )
