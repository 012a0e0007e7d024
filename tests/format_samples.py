"""Realistic samples of every format flurry reads, written by the tests (nothing downloaded).

Each sample holds one record that answers one question and a few that do not, so a test can
check that retrieval cites the right record and not merely the right file.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_pdf(pages: list[list[str]], title: str = "") -> bytes:
    """A small, valid PDF with a text layer: one page per list of lines (Helvetica)."""
    objects: list[bytes] = []
    font_id = 3
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(
        f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {len(pages)} >>".encode()
    )
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for page_id, lines in zip(page_ids, pages, strict=False):
        ops = ["BT", "/F1 11 Tf", "14 TL", "60 780 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info_id = len(objects) + 1
    objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info_id} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def email(
    sender: str, to: str, date: str, subject: str, body: str, message_id: str, extra: str = ""
) -> str:
    return (
        f"From: {sender}\nTo: {to}\nDate: {date}\nSubject: {subject}\nMessage-ID: <{message_id}>\n"
        f"MIME-Version: 1.0\n{extra}Content-Type: text/plain; charset=utf-8\n\n{body}\n"
    )


BANK_LETTER = email(
    "Banco Atlântico <avisos@bancoatlantico.pt>",
    "Rui Costa <rui@example.org>",
    "Tue, 03 Mar 2026 09:12:00 +0000",
    "Your mortgage rate changes in April",
    "Dear Rui,\n\nFrom the first of April the interest rate of your mortgage becomes 3.1 percent, "
    "and the monthly instalment rises to 742 euros. No action is needed on your side.\n\nBanco Atlântico",
    "rate-2026@bancoatlantico.pt",
)

MBOX_MESSAGES = [
    email(
        "Ana Silva <ana@example.org>",
        "rui@example.org",
        "Mon, 02 Feb 2026 18:00:00 +0000",
        "Saturday hike",
        "Shall we hike the Sintra trail on Saturday? Meet at Rossio station at eight.",
        "hike@example.org",
    ),
    email(
        "Clube de Xadrez <clube@example.org>",
        "rui@example.org",
        "Wed, 04 Feb 2026 10:00:00 +0000",
        "Chess club membership fee",
        "The yearly chess club membership fee is sixty euros, due by the end of February.",
        "chess@example.org",
    ),
    email(
        "Marta <marta@example.org>",
        "rui@example.org",
        "Fri, 06 Feb 2026 21:30:00 +0000",
        "Book recommendation",
        "You should read The Name of the Wind, it is the fantasy novel I mentioned.",
        "book@example.org",
    ),
]


def mbox(messages: list[str]) -> str:
    parts = []
    for i, message in enumerate(messages):
        escaped = "\n".join(
            (">" + line) if line.startswith("From ") else line for line in message.splitlines()
        )
        parts.append(f"From sender{i}@example.org Mon Feb  2 18:00:00 2026\n{escaped}\n")
    return "\n".join(parts)


CALENDAR = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//flurry tests//EN
X-WR-CALNAME:Family
BEGIN:VEVENT
UID:vet-1@example.org
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Lisbon:20260416T153000
DTEND;TZID=Europe/Lisbon:20260416T161500
SUMMARY:Veterinarian appointment for Luna the cat
LOCATION:Clínica Veterinária do Bairro\\, Rua das Flores 12
DESCRIPTION:Annual vaccination for the cat. Bring her vaccination booklet.
END:VEVENT
BEGIN:VEVENT
UID:choir-1@example.org
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Lisbon:20260105T193000
DTEND;TZID=Europe/Lisbon:20260105T213000
RRULE:FREQ=WEEKLY;BYDAY=MO
SUMMARY:Choir rehearsal
LOCATION:Igreja de São Roque
END:VEVENT
BEGIN:VEVENT
UID:tax-1@example.org
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260630
SUMMARY:Income tax return deadline
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")

CONTACTS = """BEGIN:VCARD
VERSION:3.0
FN:Joana Ferreira
N:Ferreira;Joana;;;
TEL;TYPE=CELL:+351 912 345 678
EMAIL;TYPE=HOME:joana.ferreira@example.org
NOTE:Plumber who fixed the boiler
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Pedro Santos
N:Santos;Pedro;;;
TEL;TYPE=CELL:+351 934 000 111
ADR;TYPE=HOME:;;Rua Augusta 40;Lisboa;;1100-053;Portugal
BDAY:1988-07-21
END:VCARD
BEGIN:VCARD
VERSION:4.0
FN:Dr. Helena Almeida
ORG:Clínica Dentária Almeida
TEL;TYPE=work:+351 213 555 010
END:VCARD
""".replace("\n", "\r\n")

WHATSAPP = """12/03/2026, 09:15 - Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
12/03/2026, 09:15 - Sofia: Good morning! Are we still on for dinner?
12/03/2026, 09:17 - Rui: Yes, at the Ramen place on Rua da Rosa, table booked for 20:30
12/03/2026, 09:18 - Sofia: Perfect, see you there
15/03/2026, 17:02 - Sofia: Did you return the drill I lent you?
15/03/2026, 17:10 - Rui: Not yet, I will bring it back on Sunday
"""

TELEGRAM = {
    "name": "Climbing group",
    "type": "private_group",
    "id": 42,
    "messages": [
        {
            "id": 1,
            "type": "message",
            "date": "2026-03-20T19:00:00",
            "from": "Tiago",
            "text": "The climbing wall changed its hours: it now opens at seven in the morning on weekdays.",
        },
        {
            "id": 2,
            "type": "message",
            "date": "2026-03-20T19:05:00",
            "from": "Rui",
            "text": ["Great, ", {"type": "bold", "text": "Tuesday"}, " at seven then"],
        },
        {
            "id": 3,
            "type": "service",
            "date": "2026-03-21T08:00:00",
            "actor": "Tiago",
            "action": "pin_message",
        },
        {
            "id": 4,
            "type": "message",
            "date": "2026-03-25T12:00:00",
            "from": "Inês",
            "text": "I found my chalk bag, it was in the car.",
        },
    ],
}

HTML_ARTICLE = """<!doctype html><html><head><meta charset="utf-8"><title>How to descale an espresso machine</title>
<script>var tracking = "do-not-index-this-script";</script></head>
<body><nav><a href="/">Home</a> <a href="/shop">Shop the coffee sale now</a></nav>
<header>Coffee Weekly newsletter</header>
<article><h1>How to descale an espresso machine</h1>
<p>Descale the espresso machine every two months with a solution of citric acid: twenty grams in one litre of water.</p>
<h2>Rinsing</h2><p>Afterwards run three full tanks of clean water through the group head.</p></article>
<aside>Related: the best grinders of the year</aside><footer>Copyright Coffee Weekly</footer></body></html>
"""

OBSIDIAN = """---
tags: [boat, summer]
aliases: [Sailing]
---
# Sailing course

The sailing course at the Belém nautical club starts on the ninth of June and costs 280 euros.
Instructor is Captain Duarte; see [[Boat checklist]] and [[Summer plans|plans]].
"""

PDF_PAGES = [
    ["Electricity contract - EDP Comercial", "Customer: Rui Costa", "Contract number 55-1200-7781"],
    [
        "Tariff details",
        "The contracted power is 6.9 kVA on the bi-hourly tariff.",
        "Off-peak hours run from ten at night to eight in the morning.",
    ],
]


def write_all(root: Path) -> dict[str, Path]:
    """Every sample under ``root``; returns name → path."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "eml": root / "mail" / "bank.eml",
        "mbox": root / "mail" / "friends.mbox",
        "maildir": root / "Maildir" / "cur" / "1709000000.M1P1.host:2,S",
        "ics": root / "family.ics",
        "vcf": root / "contacts.vcf",
        "whatsapp": root / "WhatsApp Chat with Sofia.txt",
        "telegram": root / "telegram" / "result.json",
        "html": root / "saved" / "descale.html",
        "obsidian": root / "vault" / "Sailing course.md",
        "pdf": root / "papers" / "electricity.pdf",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    (root / "Maildir" / "new").mkdir(exist_ok=True)
    (root / "Maildir" / "tmp").mkdir(exist_ok=True)
    paths["eml"].write_text(BANK_LETTER)
    paths["mbox"].write_text(mbox(MBOX_MESSAGES))
    paths["maildir"].write_text(
        email(
            "Escola Primária <secretaria@escola.example.org>",
            "rui@example.org",
            "Thu, 05 Mar 2026 16:00:00 +0000",
            "School trip permission slip",
            "The school trip to the Oceanário is on the twentieth of March; please sign the permission slip by Monday.",
            "trip@escola.example.org",
        )
    )
    paths["ics"].write_text(CALENDAR, newline="")
    paths["vcf"].write_text(CONTACTS, newline="")
    paths["whatsapp"].write_text(WHATSAPP)
    paths["telegram"].write_text(json.dumps(TELEGRAM, ensure_ascii=False))
    paths["html"].write_text(HTML_ARTICLE)
    paths["obsidian"].write_text(OBSIDIAN)
    paths["pdf"].write_bytes(make_pdf(PDF_PAGES, title="EDP contract"))
    return paths
