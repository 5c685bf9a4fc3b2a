"""The page's words in Ukrainian (the default) and English, and which one to show.

The operator may pick a language with `?lang=en|uk` (remembered in a cookie);
otherwise the browser's Accept-Language decides, otherwise `portal.lang`.
Progress messages come from the job's events (`msg`, `msg_en`), not from here.
"""

from __future__ import annotations

LANGUAGES = ("uk", "en")

TEXTS: dict[str, dict[str, str]] = {
    "uk": {
        "html_title": "Оновлення системи",
        "product": "Телеметрія",
        "site": "Об'єкт",
        "version": "Версія",
        "other_lang": "English",
        "other_lang_code": "en",
        "logout": "Вийти",
        "login_title": "Вхід для оператора",
        "login_hint": "Введіть PIN-код, щоб переглядати та встановлювати оновлення.",
        "pin": "PIN-код",
        "login": "Увійти",
        "clear": "Стерти",
        "wrong_pin": "Неправильний PIN-код. Спробуйте ще раз.",
        "locked": "Забагато невдалих спроб. Вхід заблоковано на {min} хв.",
        "no_pin": "PIN-код порталу не налаштовано. Зверніться до адміністратора.",
        "network_error": "Немає зв'язку з системою. Перевірте мережу та спробуйте ще раз.",
        "badge": "Отримано оновлення v{v}",
        "installed": "Встановлена версія",
        "no_update": "Нових оновлень немає",
        "no_update_hint": "Система працює. Коли адміністратор надішле оновлення, "
                          "воно з'явиться тут.",
        "update_ready": "Оновлення v{v} готове до встановлення",
        "update_ready_hint": "Перегляньте, що змінилося, і встановіть у зручний час.",
        "review": "Переглянути оновлення",
        "dialog_title": "Оновлення v{v}",
        "received": "Отримано",
        "notes": "Що нового",
        "no_notes": "Опис змін відсутній.",
        "apply_warning": "Під час встановлення служби системи буде перезапущено. "
                         "Резервну копію буде створено автоматично.",
        "apply": "Застосувати",
        "later": "Пізніше",
        "apply_refused": "Оновлення не розпочато: {error}",
        "progress_title": "Встановлення оновлення v{v}",
        "progress_hint": "Не вимикайте комп'ютер, доки встановлення не завершиться.",
        "starting": "Запуск…",
        "step_verify": "Перевірка пакету",
        "step_backup": "Резервна копія",
        "step_patch": "Застосування файлів",
        "step_migrate": "Міграція БД",
        "done_title": "Оновлення встановлено",
        "done_msg": "Перезапуск…",
        "reload_in": "Сторінка оновиться через {s} с.",
        "failed_title": "Оновлення не встановлено",
        "old_running": "Працює попередня версія v{v}: у ній нічого не змінено.",
        "kept_pending": "Пакет оновлення збережено: можна спробувати ще раз "
                        "або дочекатися виправленого від адміністратора.",
        "reason_verify": "Пакет оновлення не пройшов перевірку: підпис або вміст "
                         "не збігаються з тим, що надіслав адміністратор.",
        "reason_backup": "Не вдалося створити резервну копію (можливо, на диску бракує місця).",
        "reason_disk": "На диску бракує місця для оновлення: нічого не змінено. "
                       "Звільніть місце і спробуйте ще раз.",
        "reason_patch": "Не вдалося замінити файли програми.",
        "reason_migrate": "Не вдалося оновити базу даних.",
        "reason_restart": "Не вдалося завершити встановлення.",
        "reason_other": "Під час встановлення сталася помилка.",
        "details": "Технічні подробиці",
        "close": "Закрити",
        "last_done": "Останнє оновлення встановлено {time}.",
        "last_failed": "Остання спроба оновлення ({time}) не вдалася: {reason}",
        "reconnecting": "Зв'язок втрачено. Відновлюємо з'єднання…",
    },
    "en": {
        "html_title": "System updates",
        "product": "Telemetry",
        "site": "Site",
        "version": "Version",
        "other_lang": "Українська",
        "other_lang_code": "uk",
        "logout": "Sign out",
        "login_title": "Operator sign-in",
        "login_hint": "Enter the PIN to review and install updates.",
        "pin": "PIN",
        "login": "Sign in",
        "clear": "Clear",
        "wrong_pin": "Wrong PIN. Please try again.",
        "locked": "Too many wrong attempts. Sign-in is locked for {min} min.",
        "no_pin": "No portal PIN is configured. Ask your administrator.",
        "network_error": "Cannot reach the system. Check the network and try again.",
        "badge": "Update received: v{v}",
        "installed": "Installed version",
        "no_update": "No new updates",
        "no_update_hint": "The system is running. When the administrator sends an update, "
                          "it appears here.",
        "update_ready": "Update v{v} is ready to install",
        "update_ready_hint": "Review what changed and install it when convenient.",
        "review": "Review update",
        "dialog_title": "Update v{v}",
        "received": "Received",
        "notes": "What's new",
        "no_notes": "No description of the changes.",
        "apply_warning": "The system's services restart during the installation. "
                         "A backup is made automatically.",
        "apply": "Apply",
        "later": "Later",
        "apply_refused": "The update did not start: {error}",
        "progress_title": "Installing update v{v}",
        "progress_hint": "Do not switch the computer off until the installation finishes.",
        "starting": "Starting…",
        "step_verify": "Checking the package",
        "step_backup": "Backup",
        "step_patch": "Applying files",
        "step_migrate": "Database migration",
        "done_title": "Update installed",
        "done_msg": "Restarting…",
        "reload_in": "The page reloads in {s} s.",
        "failed_title": "Update not installed",
        "old_running": "The previous version v{v} is still running: nothing in it was changed.",
        "kept_pending": "The update package is kept: you can try again, "
                        "or wait for a fixed one from the administrator.",
        "reason_verify": "The update package failed its check: its signature or contents "
                         "do not match what the administrator sent.",
        "reason_backup": "The backup could not be made (the disk may be full).",
        "reason_disk": "There is not enough free disk space for the update: nothing was "
                       "changed. Free some space and try again.",
        "reason_patch": "The program files could not be replaced.",
        "reason_migrate": "The database could not be updated.",
        "reason_restart": "The installation could not be completed.",
        "reason_other": "An error occurred during the installation.",
        "details": "Technical details",
        "close": "Close",
        "last_done": "The last update was installed {time}.",
        "last_failed": "The last update attempt ({time}) failed: {reason}",
        "reconnecting": "Connection lost. Reconnecting…",
    },
}


def choose_language(query: str | None, cookie: str | None, accept_language: str | None,
                    default: str) -> str:
    """The page's language: an explicit choice, then the browser's, then the site's default."""
    for explicit in (query, cookie):
        if explicit in LANGUAGES:
            return str(explicit)
    return _from_accept_language(accept_language or "") or default


def _from_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (`uk,en;q=0.8` → uk)."""
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None
