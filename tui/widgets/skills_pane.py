"""Skills (F4): install a skill after reviewing its permissions, enable, set policy, remove."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Input, Static

from tui.format import cell
from tui.screens import Confirm, PermissionReview, ToolPolicy, ToolReview
from tui.widgets.pane import Pane
from tui.widgets.skills_table import SkillsTable


class SkillsPane(Pane):
    FIRST = "#skill-source"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skills: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="A skill's wheel or project folder to install (Enter)", id="skill-source"
        )
        yield SkillsTable(id="skills", cursor_type="row")
        yield Static("", id="skill-detail", markup=False)

    async def refresh_data(self) -> None:
        found = await self.api("GET", "/api/owner/skills")
        if found is None:
            self.query_one("#skills", DataTable).border_title = "cannot list the skills"
            return
        self.skills = {s["name"]: s for s in found}
        table = self.query_one("#skills", DataTable)
        table.clear(columns=True)
        table.add_columns("Skill", "Version", "State", "Granted")
        for s in found:
            state = ("enabled" if s["enabled"] else "disabled") if s["approved"] else "not approved"
            if s.get("review"):  # tools changed since approval (R reviews them)
                state += f", {len(s['review'])} to review"
            table.add_row(
                *map(
                    cell,
                    (
                        s["name"],
                        s.get("version", ""),
                        state,
                        ", ".join(s.get("granted", [])) or "-",
                    ),
                ),
                key=s["name"],
            )
        table.border_title = (
            f"{len(found)} skills installed" if found else "no skills installed yet"
        )
        self.show_detail()

    def skill(self, name: str | None) -> dict | None:
        return self.skills.get(name) if name is not None else None

    @on(DataTable.RowHighlighted, "#skills")
    def show_detail(self) -> None:
        s = self.skill(self.query_one("#skills", SkillsTable).cursor_key)
        if s is None:
            self.query_one("#skill-detail", Static).update("")
            return
        lines = [
            f"{s['name']} {s.get('version', '')}: {s.get('description', '')}",
            f"author: {s.get('author') or '(not given)'}",
        ]
        lines += [
            f"tool {t['name']} [{t.get('policy', 'ask')}]: {t.get('description', '')}"
            + (" (disabled: changed, R to review)" if t.get("disabled") else "")
            for t in s.get("tools", [])
        ]
        lines += [
            f"tool {c['name']}: {c['change']}, disabled until reviewed (R)"
            for c in s.get("review", [])
            if c["change"] != "changed"
        ]
        lines += [
            f"{'granted' if p in s.get('granted', []) else 'asked, not granted'}: {p}"
            for p in s.get("requested", [])
        ]
        self.query_one("#skill-detail", Static).update("\n".join(lines))

    @on(Input.Submitted, "#skill-source")
    def install_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.install(event.value.strip())

    @work(exclusive=True, group="skills", exit_on_error=False)
    async def install(self, source: str) -> None:
        self.notify(f"installing {self.shown(source)}…")
        skill = await self.api("POST", "/api/owner/skills/install", {"source": source})
        if skill is None:
            return
        self.query_one("#skill-source", Input).value = ""
        await self.refresh_data()

        def answered(granted: list[str] | None) -> None:
            self.reviewed(skill, granted)

        self.app.push_screen(PermissionReview(skill), answered)

    @work(group="skills", exit_on_error=False)
    async def reviewed(self, skill: dict, granted: list[str] | None) -> None:
        if granted is None:
            if (
                await self.api("POST", "/api/owner/skills/remove", {"name": skill["name"]})
                is not None
            ):
                self.notify(f"rejected: {skill['name']} was removed again")
        elif (
            await self.api(
                "POST", "/api/owner/skills/approve", {"name": skill["name"], "permissions": granted}
            )
            is not None
        ):
            self.notify(f"approved {skill['name']}; its tools ask you before they run")
        await self.refresh_data()

    @on(SkillsTable.Toggle)
    def toggle_asked(self, event: SkillsTable.Toggle) -> None:
        s = self.skill(event.key)
        if s is not None:
            self.change(s["name"], "disable" if s["enabled"] else "enable")

    @work(group="skills", exit_on_error=False)
    async def change(self, name: str, verb: str) -> None:
        if await self.api("POST", f"/api/owner/skills/{verb}", {"name": name}) is not None:
            self.notify(f"{verb}d {name}")
        await self.refresh_data()

    @on(SkillsTable.Policy)
    def policy_asked(self, event: SkillsTable.Policy) -> None:
        s = self.skill(event.key)
        if s is None or not s.get("tools"):
            self.notify("this skill lists no tools", severity="warning")
            return

        def answered(changed: dict[str, str] | None) -> None:
            self.set_policy(changed)

        self.app.push_screen(ToolPolicy(s), answered)

    @work(group="skills", exit_on_error=False)
    async def set_policy(self, changed: dict[str, str] | None) -> None:
        for tool, decision in (changed or {}).items():
            if (
                await self.api(
                    "PUT", "/api/owner/skills/policy", {"tool": tool, "decision": decision}
                )
                is not None
            ):
                self.notify(f"{tool}: {decision}")
        await self.refresh_data()

    @on(SkillsTable.Review)
    def review_asked(self, event: SkillsTable.Review) -> None:
        s = self.skill(event.key)
        if s is None or not s.get("review"):
            self.notify("every tool of this skill is as you approved it")
            return

        def answered(accepted: list[str] | None) -> None:
            if accepted:
                self.accept_tools(s["name"], accepted)

        self.app.push_screen(ToolReview(s), answered)

    @work(group="skills", exit_on_error=False)
    async def accept_tools(self, name: str, accepted: list[str]) -> None:
        body = {"name": name, "accept": accepted, "accept_all": False}
        if await self.api("POST", "/api/owner/skills/review", body) is not None:
            self.notify(f"accepted {', '.join(accepted)} of {name}")
        await self.refresh_data()

    @on(SkillsTable.Remove)
    def remove_asked(self, event: SkillsTable.Remove) -> None:
        s = self.skill(event.key)
        if s is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.change(s["name"], "remove")

        self.app.push_screen(Confirm(f"Remove the skill {s['name']}?"), confirmed)
